"""Affine paths x_t = alpha_t x1 + sigma_t x0 (+ constant noise sigma eps) with any scheduler.

:class:`AffinePath` is Meta flow_matching's ``AffineProbPath`` in flowmatch's conventions: the
mean is mu_t = alpha_t x1 + sigma_t x0 (:mod:`flowmatch.paths.schedulers`), so that from a
Gaussian source x0 ~ N(0, I) the path is p_t(x | x1) = N(alpha_t x1, sigma_t^2 I) and the
velocity, x1-, eps- and score-parametrisations convert into each other
(:mod:`flowmatch.paths.conversions`). With any other source (data to data, an OT coupling) the
same mean interpolates the pair. An optional constant noise ``sigma`` on top (I-CFM's sigma) is
composed as in Tong et al. (TMLR 2024): x_t = mu_t + sigma eps, u_t = d mu_t / dt.

The named paths of the methods are instances:

| class                      | scheduler                  | noise sigma |
|----------------------------|----------------------------|-------------|
| LinearPath (I-CFM, OT-CFM) | CondOTScheduler()          | sigma       |
| GaussianToDataPath (FM)    | CondOTScheduler(sigma_min) | 0           |
| VPTrigPath (VP-CFM)        | CosineScheduler()          | sigma       |
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_fits_float32, check_nonnegative_float
from flowmatch.paths.conditional import ProbabilityPath, pad_t
from flowmatch.paths.schedulers import CondOTScheduler, CosineScheduler, Scheduler

__all__ = ["AffinePath", "LinearPath", "GaussianToDataPath", "VPTrigPath"]


class AffinePath(ProbabilityPath):
    """mu_t = alpha_t x1 + sigma_t x0 from a :class:`~flowmatch.paths.schedulers.Scheduler`, plus a
    constant noise ``sigma`` (default 0).

    Args:
        scheduler: alpha_t, sigma_t and their derivatives.
        sigma: standard deviation of extra noise on top of the mean (0: none, the Gaussian path of
            a noise source).

    Example:
        >>> import torch
        >>> from flowmatch.paths.schedulers import VPScheduler
        >>> path = AffinePath(VPScheduler())
        >>> x0, x1, t = torch.randn(3, 2), torch.randn(3, 2), torch.rand(3)
        >>> path.x_t(x0, x1, t, torch.zeros(3, 2)).shape
        torch.Size([3, 2])
    """

    def __init__(self, scheduler: Scheduler, sigma: float = 0.0):
        if not isinstance(scheduler, Scheduler):
            raise TypeError(f"scheduler must be a Scheduler, got {type(scheduler).__name__}")
        self.scheduler = scheduler
        self.sigma = check_fits_float32("sigma", check_nonnegative_float("sigma", sigma))  # sigma_t is float32

    @property
    def is_stochastic(self) -> bool:
        return self.sigma > 0

    @property
    def is_gaussian(self) -> bool:
        """True when x_t = alpha_t x1 + sigma_t x0 exactly (no extra noise): from a N(0, I) source the
        parametrisations of :mod:`flowmatch.paths.conversions` apply."""
        return self.sigma == 0

    def mu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        out = self.scheduler(t)
        return pad_t(out.alpha, x0) * x1 + pad_t(out.sigma, x0) * x0

    def dmu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        out = self.scheduler(t)
        return pad_t(out.d_alpha, x0) * x1 + pad_t(out.d_sigma, x0) * x0

    def sigma_t(self, t: Tensor) -> Tensor:
        return torch.full_like(t, self.sigma)

    def dsigma_t(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def __repr__(self) -> str:
        return f"AffinePath(scheduler={self.scheduler!r}, sigma={self.sigma!r})"


class LinearPath(AffinePath):
    """Straight interpolant with constant noise (I-CFM, OT-CFM; sigma = 0 gives rectified flow).

    mu_t = t x1 + (1 - t) x0,  sigma_t = sigma,  u_t = x1 - x0: :class:`AffinePath` with
    :class:`~flowmatch.paths.schedulers.CondOTScheduler`. Tong et al. TMLR 2024, eq. (14)-(15);
    Liu et al. ICLR 2023 (rectified flow) for sigma = 0.
    """

    def __init__(self, sigma: float = 0.0):
        super().__init__(CondOTScheduler(), sigma)

    # The scheduler's formulas, written out: the hot path of I-CFM / OT-CFM skips the ones and
    # minus ones of CondOT's derivatives (tests check the two agree).
    def mu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        tt = pad_t(t, x0)
        return tt * x1 + (1 - tt) * x0

    def dmu_t(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        return x1 - x0

    def __repr__(self) -> str:
        return f"LinearPath(sigma={self.sigma!r})"


class GaussianToDataPath(AffinePath):
    """Lipman et al. (ICLR 2023) flow matching path from N(0, I) with the OT conditional map.

    Lipman's path conditions on x1 only: p_t(x | x1) = N(t x1, (1 - (1 - sigma_min) t)^2 I). Its
    noise is the source sample itself: with x0 ~ N(0, I),

        x_t = t x1 + (1 - (1 - sigma_min) t) x0,    u_t = x1 - (1 - sigma_min) x0,

    which equals Lipman's u_t(x | x1) = (x1 - (1 - sigma_min) x) / (1 - (1 - sigma_min) t) at x = x_t.
    So the source must be a standard normal; x0 plays the role of eps and sigma_t (the extra noise
    on top of x0) is 0: :class:`AffinePath` with ``CondOTScheduler(sigma_min)``.
    """

    def __init__(self, sigma_min: float = 0.0):
        scheduler = CondOTScheduler(sigma_min)
        super().__init__(scheduler)
        self.sigma_min = scheduler.sigma_min

    def __repr__(self) -> str:
        return f"GaussianToDataPath(sigma_min={self.sigma_min!r})"


class VPTrigPath(AffinePath):
    """Variance-preserving trigonometric interpolant (VP-CFM), Albergo & Vanden-Eijnden (ICLR 2023).

    mu_t = cos(pi t / 2) x0 + sin(pi t / 2) x1,  sigma_t = sigma,
    u_t = (pi / 2) (cos(pi t / 2) x1 - sin(pi t / 2) x0): :class:`AffinePath` with
    :class:`~flowmatch.paths.schedulers.CosineScheduler`. Tong et al. TMLR 2024, Table 1 (VP-CFM row).
    """

    def __init__(self, sigma: float = 0.0):
        super().__init__(CosineScheduler(), sigma)

    def __repr__(self) -> str:
        return f"VPTrigPath(sigma={self.sigma!r})"
