"""The flat torus T^d = R^d / (2 pi Z)^d, points as angles in [-pi, pi)^d.

With wrap(a) = ((a + pi) mod 2 pi) - pi, the flat metric gives (Chen & Lipman, ICLR 2024, Sec. 3):

    exp_x(u) = wrap(x + u),  log_x(y) = wrap(y - x),  d(x, y) = ||wrap(y - x)||,
    gamma(t) = wrap(x0 + t wrap(x1 - x0)),  gamma'(t) = wrap(x1 - x0) (constant),

and every tangent vector is its own projection. Antipodal angles (|y_i - x_i| = pi) have two
shortest geodesics; wrap picks the one of velocity -pi.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.manifolds.base import Manifold

__all__ = ["FlatTorus", "wrap"]


def wrap(a: Tensor) -> Tensor:
    """Angles reduced to [-pi, pi): ((a + pi) mod 2 pi) - pi."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


class FlatTorus(Manifold):
    """T^d with the flat metric (the product of d circles of length 2 pi); points ``(B, d)`` in [-pi, pi).

    Example:
        >>> import torch
        >>> t = FlatTorus(2)
        >>> round(float(t.dist(torch.tensor([[3.0, 0.0]]), torch.tensor([[-3.0, 0.0]]))), 4)  # across the seam
        0.2832
    """

    name = "torus"

    def __init__(self, dim: int = 2):
        self.dim = check_positive_int("dim", dim)
        self.ambient_dim = self.dim

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        return wrap(x + u)

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        return wrap(y - x)

    def proj_point(self, x: Tensor) -> Tensor:
        return wrap(x)

    def proj_tangent(self, x: Tensor, u: Tensor) -> Tensor:
        return u

    def random_uniform(self, n: int, *, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
        n = check_positive_int("n", n)
        u = torch.rand(n, self.dim, generator=generator, dtype=dtype, device=device)
        return wrap(2 * math.pi * u - math.pi)

    def log_volume(self) -> float:
        return self.dim * math.log(2 * math.pi)

    def distance_to_manifold(self, x: Tensor) -> Tensor:
        """How far the angles are outside [-pi, pi] (the chart every point is stored in)."""
        return torch.linalg.vector_norm((x.abs() - math.pi).clamp_min(0), dim=-1)

    def features(self, x: Tensor) -> Tensor:
        """(cos x, sin x): the periodic embedding of T^d in R^{2d} a network sees."""
        return torch.cat([torch.cos(x), torch.sin(x)], dim=-1)

    @property
    def feature_dim(self) -> int:
        return 2 * self.dim

    def geodesic_velocity(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        return wrap(x1 - x0)
