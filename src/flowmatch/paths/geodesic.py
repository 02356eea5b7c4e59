"""The geodesic conditional path of Riemannian flow matching (Chen & Lipman, "Flow Matching on
General Geometries", ICLR 2024, Eq. 13 with kappa(t) = 1 - t):

    x_t = exp_{x0}(t log_{x0}(x1)),   u_t = d x_t / dt,

the constant-speed geodesic from x0 (t = 0) to x1 (t = 1); u_t is the manifold's closed form
(:meth:`flowmatch.manifolds.Manifold.geodesic_velocity`), which equals log_{x_t}(x1) / (1 - t)
for t < 1. The path has no noise (sigma_t = 0), so it is a :class:`ProbabilityPath` whose mean is
the geodesic and the :class:`~flowmatch.objectives.cfm.FlowMatcher` machinery (couplings, time
samplers, pairings solved ahead) applies unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch.manifolds import Manifold
from flowmatch.paths.conditional import ProbabilityPath

__all__ = ["GeodesicPath"]


class GeodesicPath(ProbabilityPath):
    """x_t = exp_{x0}(t log_{x0}(x1)) on ``manifold``, u_t its time derivative; points ``(B, ambient_dim)``.

    Example:
        >>> import torch
        >>> from flowmatch.manifolds import Sphere
        >>> p = GeodesicPath(Sphere(2))
        >>> x0, x1 = torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.0, 1, 0]])
        >>> p.x_t(x0, x1, torch.tensor([0.5]), torch.zeros(1, 3)).mul(2**0.5).round(decimals=4)
        tensor([[1., 1., 0.]])
    """

    def __init__(self, manifold: Manifold):
        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold must be a Manifold, got {type(manifold).__name__}")
        self.manifold = manifold

    @property
    def is_stochastic(self) -> bool:
        return False

    def mu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        return self.manifold.geodesic(x0, x1, t.to(x0.dtype))

    def dmu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        return self.manifold.geodesic_velocity(x0, x1, t.to(x0.dtype))

    def sigma_t(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def dsigma_t(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def x_t(self, x0: Tensor, x1: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """The geodesic point (``eps`` is unused: the path has no noise)."""
        return self.mu_t(x0, x1, t)

    def u_t(self, x0: Tensor, x1: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self.dmu_t(x0, x1, t)
