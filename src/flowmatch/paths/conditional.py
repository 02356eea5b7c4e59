"""Conditional probability paths p_t(x | x0, x1) = N(mu_t(x0, x1), sigma_t^2 I).

Every path here is Gaussian around an interpolant of the pair (x0, x1):

    x_t = mu_t(x0, x1) + sigma_t * eps,            eps ~ N(0, I)
    u_t = d mu_t / dt + (d sigma_t / dt) * eps       (the conditional velocity)

The second line is the conditional vector field of Tong et al. (TMLR 2024, Theorem 3.1 / eq. 15),
u_t = d mu_t/dt + (sigma_t'/sigma_t)(x_t - mu_t), written through eps = (x_t - mu_t)/sigma_t so that
it stays defined where sigma_t = 0 (for example sigma = 0 in rectified flow).

Shapes: x0, x1, eps are (B, *dims); t is (B,). Every method broadcasts t over *dims.

Paths (t = 0 is the source, t = 1 the target):

| class                      | mu_t                                  | sigma_t                  |
|----------------------------|---------------------------------------|--------------------------|
| BrownianBridgePath (SB)    | t x1 + (1 - t) x0                      | sigma sqrt(t (1 - t))    |

The affine paths mu_t = alpha_t x1 + sigma_t x0 with a scheduler (I-CFM / OT-CFM's LinearPath,
Lipman's GaussianToDataPath, VPTrigPath, any :class:`~flowmatch.paths.affine.AffinePath`) are in
:mod:`flowmatch.paths.affine`; the Brownian bridge is composed of the straight mean and its own
noise, so it stays here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from flowmatch._utils.validate import check_fits_float32, check_nonnegative_float

__all__ = ["ProbabilityPath", "BrownianBridgePath", "pad_t"]


def pad_t(t: Tensor, x: Tensor) -> Tensor:
    """Reshape t of shape (B,) to (B, 1, ..., 1) so that it broadcasts against x of shape (B, *dims)."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


class ProbabilityPath(ABC):
    """A Gaussian conditional path x_t = mu_t(x0, x1) + sigma_t eps.

    Subclasses provide mu_t and its time derivative, sigma_t and its time derivative, and the
    closed interval ``t_range`` on which u_t is finite. ``x_t`` and ``u_t`` follow from them.
    """

    #: Interval [t_lo, t_hi] on which the conditional velocity is finite; time samplers draw from it.
    t_range: tuple[float, float] = (0.0, 1.0)

    @abstractmethod
    def mu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """Mean of the path at time t, shape (B, *dims)."""

    @abstractmethod
    def dmu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """d mu_t / dt, shape (B, *dims)."""

    @abstractmethod
    def sigma_t(self, t: Tensor) -> Tensor:
        """Standard deviation of the path at time t, shape (B,)."""

    @abstractmethod
    def dsigma_t(self, t: Tensor) -> Tensor:
        """d sigma_t / dt, shape (B,)."""

    @property
    def is_stochastic(self) -> bool:
        """True when sigma_t is not identically zero (x_t needs noise eps)."""
        return True

    def x_t(self, x0: Tensor, x1: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = mu_t(x0, x1) + sigma_t eps."""
        return self.mu_t(x0, x1, t) + pad_t(self.sigma_t(t), x0) * eps

    def u_t(self, x0: Tensor, x1: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Conditional velocity u_t = d mu_t/dt + (d sigma_t/dt) eps (= d x_t / dt at fixed eps)."""
        return self.dmu_t(x0, x1, t) + pad_t(self.dsigma_t(t), x0) * eps

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class _StraightMean(ProbabilityPath):
    """Paths whose mean is the straight line mu_t = t x1 + (1 - t) x0 and whose noise scale is
    ``self.sigma`` (stochastic when sigma > 0)."""

    sigma: float

    @property
    def is_stochastic(self) -> bool:
        return self.sigma > 0

    def mu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        tt = pad_t(t, x0)
        return tt * x1 + (1 - tt) * x0

    def dmu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        return x1 - x0


class BrownianBridgePath(_StraightMean):
    """Brownian bridge between x0 and x1 with diffusion sigma (SB-CFM).

    mu_t = t x1 + (1 - t) x0,  sigma_t = sigma sqrt(t (1 - t)),
    u_t = x1 - x0 + sigma (1 - 2t) / (2 sqrt(t (1 - t))) eps
        = x1 - x0 + (1 - 2t) / (2 t (1 - t)) (x_t - mu_t).
    Tong et al. TMLR 2024, eq. (19); Tong et al. AISTATS 2024 ([SF]2M).

    Endpoints: d sigma_t / dt diverges like 1/sqrt(t) at t = 0 and 1, so u_t is unbounded there (its
    variance grows like 1/t). The path therefore declares the documented interval
    ``t_range = (t_eps, 1 - t_eps)`` from which time samplers draw; at t_eps = 1e-3 the noise term
    of u_t has standard deviation at most sigma / (2 sqrt(t_eps)) ~ 15.8 sigma.
    """

    def __init__(self, sigma: float = 1.0, t_eps: float = 1e-3):
        self.sigma = check_fits_float32("sigma", check_nonnegative_float("sigma", sigma))  # sigma_t is float32
        t_eps = check_nonnegative_float("t_eps", t_eps)
        if not t_eps < 0.5:
            raise ValueError(f"t_eps must lie in [0, 0.5), got {t_eps!r}")
        if self.sigma > 0 and t_eps == 0:
            raise ValueError("t_eps must be > 0 when sigma > 0 (u_t is infinite at t = 0 and 1), got 0.0")
        self.t_eps = t_eps
        self.t_range = (t_eps, 1.0 - t_eps)

    def sigma_t(self, t: Tensor) -> Tensor:
        return self.sigma * torch.sqrt(t * (1 - t))

    def dsigma_t(self, t: Tensor) -> Tensor:
        if self.sigma == 0:
            return torch.zeros_like(t)
        return self.sigma * (1 - 2 * t) / (2 * torch.sqrt(t * (1 - t)))
