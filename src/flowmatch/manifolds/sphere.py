"""The unit sphere S^d = {x in R^{d+1} : ||x|| = 1} with the round metric.

Closed forms (e.g. Absil, Mahony & Sepulchre, "Optimization Algorithms on Matrix Manifolds",
2008, Example 5.4.1; used by Chen & Lipman, ICLR 2024, for Riemannian flow matching):

    exp_x(u) = cos(||u||) x + sin(||u||) u / ||u||,
    log_x(y) = theta w / ||w||,  w = y - <x, y> x,  theta = d(x, y) = atan2(||w||, <x, y>),
    P_x u = u - <x, u> x,
    gamma(t) = cos(t theta) x0 + sin(t theta) e,  gamma'(t) = theta (cos(t theta) e - sin(t theta) x0),

with e = log_{x0}(x1) / theta. The angle is taken by atan2 (accurate near 0 and pi, where arccos
is not). log_x(-x) has no unique value (every direction is a geodesic); it returns 0 there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.manifolds.base import Manifold, log_sphere_volume

__all__ = ["Sphere"]


def _sinc(a: Tensor) -> Tensor:
    """sin(a) / a with the value 1 at a = 0 (and its gradient there)."""
    return torch.sinc(a / math.pi)


class Sphere(Manifold):
    """S^d embedded in R^{d+1}; points are unit vectors ``(B, d + 1)``.

    Example:
        >>> import torch
        >>> s = Sphere(2)
        >>> x, y = torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.0, 1, 0]])
        >>> round(float(s.dist(x, y)), 6) == round(math.pi / 2, 6)
        True
    """

    name = "sphere"

    def __init__(self, dim: int = 2):
        self.dim = check_positive_int("dim", dim)
        self.ambient_dim = self.dim + 1

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        n = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        return torch.cos(n) * x + _sinc(n) * u

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        c = (x * y).sum(-1, keepdim=True)
        w = y - c * x
        s = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
        theta = torch.atan2(s, c)
        # theta / sin(theta) * w, with sin(theta) = s; at s = 0 (y = +-x) the ratio is taken as 1
        return w * theta / torch.where(s > 0, s, torch.ones_like(s))

    def proj_point(self, x: Tensor) -> Tensor:
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)

    def proj_tangent(self, x: Tensor, u: Tensor) -> Tensor:
        return u - (x * u).sum(-1, keepdim=True) * x

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        c = (x * y).sum(-1)
        s = torch.linalg.vector_norm(y - c[..., None] * x, dim=-1)
        return torch.atan2(s, c)

    def random_uniform(self, n: int, *, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
        """Normalised standard normal vectors (Muller 1959): uniform on S^d by rotation invariance."""
        n = check_positive_int("n", n)
        z = torch.randn(n, self.ambient_dim, generator=generator, dtype=dtype, device=device)
        return self.proj_point(z)

    def log_volume(self) -> float:
        return log_sphere_volume(self.dim)

    def distance_to_manifold(self, x: Tensor) -> Tensor:
        return (torch.linalg.vector_norm(x, dim=-1) - 1).abs()

    def geodesic_velocity(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        v = self.log(x0, x1)
        theta = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        tt = t[:, None].to(x0.dtype)
        # theta (cos(t theta) e - sin(t theta) x0), e = v / theta; written without dividing by theta
        return torch.cos(tt * theta) * v - theta * torch.sin(tt * theta) * x0
