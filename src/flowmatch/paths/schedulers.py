"""Schedulers of affine Gaussian paths: x_t = alpha_t x1 + sigma_t x0 with x0 ~ N(0, I).

A scheduler is the pair (alpha_t, sigma_t) and its time derivatives. Together with a Gaussian
source it defines the conditional path of Lipman et al. (ICLR 2023) and of Meta's flow_matching
(``AffineProbPath``): p_t(x | x1) = N(alpha_t x1, sigma_t^2 I), with conditional velocity
u_t = alpha_t' x1 + sigma_t' x0. Time runs from the noise (t = 0: alpha_0 = 0, sigma_0 = 1) to the
data (t = 1: alpha_1 = 1, sigma_1 = 0 up to sigma_min).

| scheduler                  | alpha_t                     | sigma_t                         |
|----------------------------|-----------------------------|---------------------------------|
| CondOTScheduler(sigma_min) | t                           | 1 - (1 - sigma_min) t           |
| PolynomialScheduler(n)     | t^n                         | 1 - t^n                         |
| VPScheduler(b, B)          | exp(-T_t / 2)               | sqrt(1 - exp(-T_t))             |
| LinearVPScheduler          | t                           | sqrt(1 - t^2)                   |
| CosineScheduler            | sin(pi t / 2)               | cos(pi t / 2)                   |
| CallableScheduler(a, s)    | a(t)                        | s(t) (derivatives by autograd)  |

VP is the variance-preserving SDE of Song et al. (ICLR 2021) in this time direction:
T_t = (1 - t)^2 (B - b) / 2 + (1 - t) b, the integral of beta(s) = b + s (B - b) over the diffusion
time s from 0 to 1 - t (defaults b = 0.1, B = 20); alpha_0 = exp(-(B + b) / 4) ~ 0.0066 is not
exactly 0, as in score SDEs.

Every scheduler has a signal-to-noise ratio rho_t = alpha_t / sigma_t, increasing in t, and its
inverse :meth:`Scheduler.snr_inverse` (closed form where there is one, bisection otherwise): the
change of schedule after training (:mod:`flowmatch.models.schedule_change`) maps times of one
scheduler to the other through it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_float, check_probability

__all__ = [
    "SchedulerOutput",
    "Scheduler",
    "CondOTScheduler",
    "PolynomialScheduler",
    "VPScheduler",
    "LinearVPScheduler",
    "CosineScheduler",
    "CallableScheduler",
    "scheduler_names",
    "parse_scheduler",
]


@dataclass(frozen=True)
class SchedulerOutput:
    """alpha_t, sigma_t and their time derivatives, each of t's shape."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor


class Scheduler(ABC):
    """alpha_t and sigma_t of an affine path, with derivatives, and the inverse of their ratio."""

    @abstractmethod
    def __call__(self, t: Tensor) -> SchedulerOutput:
        """alpha_t, sigma_t, alpha_t', sigma_t' at times t (any shape)."""

    def snr(self, t: Tensor) -> Tensor:
        """rho_t = alpha_t / sigma_t (inf where sigma_t = 0)."""
        out = self(t)
        return out.alpha / out.sigma

    def snr_inverse(self, rho: Tensor) -> Tensor:
        """The time t with alpha_t / sigma_t = rho (rho >= 0; inf gives 1), by bisection on [0, 1] in
        float64 to 1e-13 (subclasses with a closed form override it)."""
        r = rho.detach().to(torch.float64)
        lo = torch.zeros_like(r)
        hi = torch.ones_like(r)
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            below = self.snr(mid) < r
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return (0.5 * (lo + hi)).to(rho.dtype)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class CondOTScheduler(Scheduler):
    """alpha_t = t, sigma_t = 1 - (1 - sigma_min) t: the conditional OT path of Lipman et al.
    (ICLR 2023, eq. 20) and of I-CFM / OT-CFM's straight interpolant (sigma_min = 0)."""

    def __init__(self, sigma_min: float = 0.0):
        self.sigma_min = check_probability("sigma_min", sigma_min)
        if self.sigma_min >= 1:
            raise ValueError(f"sigma_min must lie in [0, 1), got {sigma_min!r}")

    def __call__(self, t: Tensor) -> SchedulerOutput:
        c = 1 - self.sigma_min
        return SchedulerOutput(t, 1 - c * t, torch.ones_like(t), torch.full_like(t, -c))

    def snr_inverse(self, rho: Tensor) -> Tensor:
        # rho = t / (1 - c t)  =>  t = rho / (1 + c rho); rho = inf gives 1 / c (= 1 for sigma_min 0)
        c = 1 - self.sigma_min
        return torch.where(torch.isinf(rho), torch.full_like(rho, 1 / c), rho / (1 + c * rho)).clamp(max=1.0)


class PolynomialScheduler(Scheduler):
    """alpha_t = t^n, sigma_t = 1 - t^n (Meta's PolynomialConvexScheduler); n = 1 is CondOT."""

    def __init__(self, n: float = 2.0):
        self.n = check_positive_float("n", n)

    def __call__(self, t: Tensor) -> SchedulerOutput:
        tn = t**self.n
        d = self.n * t ** (self.n - 1)
        return SchedulerOutput(tn, 1 - tn, d, -d)

    def snr_inverse(self, rho: Tensor) -> Tensor:
        # rho = k / (1 - k) with k = t^n  =>  k = rho / (1 + rho)
        k = torch.where(torch.isinf(rho), torch.ones_like(rho), rho / (1 + rho))
        return k ** (1 / self.n)


class VPScheduler(Scheduler):
    """The variance-preserving SDE of Song et al. (ICLR 2021): alpha_t = exp(-T_t / 2),
    sigma_t = sqrt(1 - alpha_t^2), T_t = (1 - t)^2 (beta_max - beta_min) / 2 + (1 - t) beta_min."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = check_positive_float("beta_min", beta_min)
        self.beta_max = check_positive_float("beta_max", beta_max)
        if not self.beta_max > self.beta_min:
            raise ValueError(f"VP needs beta_max > beta_min, got beta_min={beta_min!r}, beta_max={beta_max!r}")

    def __call__(self, t: Tensor) -> SchedulerOutput:
        b, db = self.beta_min, self.beta_max - self.beta_min
        s = 1 - t
        big_t = 0.5 * s * s * db + s * b
        d_big_t = -(s * db + b)  # d T / dt
        alpha = torch.exp(-0.5 * big_t)
        e = torch.exp(-big_t)
        sigma = torch.sqrt(1 - e)
        return SchedulerOutput(alpha, sigma, -0.5 * d_big_t * alpha, 0.5 * d_big_t * e / sigma)

    def snr_inverse(self, rho: Tensor) -> Tensor:
        # alpha^2 = rho^2 / (1 + rho^2)  =>  T = log(1 + 1 / rho^2); solve the quadratic in s = 1 - t
        b, db = self.beta_min, self.beta_max - self.beta_min
        big_t = torch.log1p(1 / (rho * rho))
        s = (torch.sqrt(b * b + 2 * db * big_t) - b) / db
        return 1 - s


class LinearVPScheduler(Scheduler):
    """alpha_t = t, sigma_t = sqrt(1 - t^2): variance preserving with a linear signal."""

    def __call__(self, t: Tensor) -> SchedulerOutput:
        sigma = torch.sqrt(1 - t * t)
        return SchedulerOutput(t, sigma, torch.ones_like(t), -t / sigma)

    def snr_inverse(self, rho: Tensor) -> Tensor:
        return torch.where(torch.isinf(rho), torch.ones_like(rho), rho / torch.sqrt(1 + rho * rho))


class CosineScheduler(Scheduler):
    """alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2): the trigonometric interpolant
    (Albergo & Vanden-Eijnden, ICLR 2023; Nichol & Dhariwal's cosine schedule in spirit)."""

    def __call__(self, t: Tensor) -> SchedulerOutput:
        # sigma as sin(pi (1 - t) / 2), not cos(pi t / 2): exactly 0 at t = 1 (float32's cos(pi / 2) is
        # -4.4e-8, a negative noise scale), exactly 1 at t = 0, and alpha the mirror image
        alpha = torch.sin(0.5 * math.pi * t)
        sigma = torch.sin(0.5 * math.pi * (1 - t))
        return SchedulerOutput(alpha, sigma, 0.5 * math.pi * sigma, -0.5 * math.pi * alpha)

    def snr_inverse(self, rho: Tensor) -> Tensor:
        return torch.atan(rho) * (2 / math.pi)


class CallableScheduler(Scheduler):
    """A user scheduler from two elementwise callables alpha(t) and sigma(t).

    Derivatives are the given callables or, by default, autograd's derivative of each elementwise
    function (computed also under ``torch.no_grad``). alpha / sigma must increase with t for
    :meth:`snr_inverse` (bisection) to mean anything.

    Example:
        >>> import torch
        >>> s = CallableScheduler(lambda t: t * t, lambda t: 1 - t * t)
        >>> s(torch.tensor([0.5])).d_alpha
        tensor([1.])
    """

    def __init__(
        self,
        alpha: Callable[[Tensor], Tensor],
        sigma: Callable[[Tensor], Tensor],
        d_alpha: Callable[[Tensor], Tensor] | None = None,
        d_sigma: Callable[[Tensor], Tensor] | None = None,
    ):
        for name, fn in (("alpha", alpha), ("sigma", sigma), ("d_alpha", d_alpha), ("d_sigma", d_sigma)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable as {name}(t), got {type(fn).__name__}")
        self._alpha, self._sigma = alpha, sigma
        self._d_alpha, self._d_sigma = d_alpha, d_sigma

    @staticmethod
    def _value_and_derivative(
        fn: Callable[[Tensor], Tensor], d_fn: Callable[[Tensor], Tensor] | None, t: Tensor, name: str
    ) -> tuple[Tensor, Tensor]:
        value = fn(t)  # keeps autograd's graph through t when t requires grad
        if d_fn is not None:
            d = d_fn(t)
        else:
            with torch.enable_grad():
                tt = t.detach().requires_grad_(True)
                out = fn(tt)
                if out.requires_grad:
                    (d,) = torch.autograd.grad(out.sum(), tt)
                else:  # a constant function of t
                    d = torch.zeros_like(t)
        if value.shape != t.shape or d.shape != t.shape:
            raise ValueError(
                f"scheduler {name}(t) must be elementwise (t's shape {tuple(t.shape)}), got {tuple(value.shape)}"
            )
        return value, d

    def __call__(self, t: Tensor) -> SchedulerOutput:
        alpha, d_alpha = self._value_and_derivative(self._alpha, self._d_alpha, t, "alpha")
        sigma, d_sigma = self._value_and_derivative(self._sigma, self._d_sigma, t, "sigma")
        return SchedulerOutput(alpha, sigma, d_alpha, d_sigma)

    def __repr__(self) -> str:
        names = (getattr(f, "__name__", type(f).__name__) for f in (self._alpha, self._sigma))
        return f"CallableScheduler({', '.join(names)})"


_PARSERS: dict[str, tuple[Callable[..., Scheduler], str]] = {
    "condot": (CondOTScheduler, "condot[:SIGMA_MIN]"),
    "polynomial": (PolynomialScheduler, "polynomial[:N]"),
    "vp": (VPScheduler, "vp[:BETA_MIN,BETA_MAX]"),
    "linear-vp": (LinearVPScheduler, "linear-vp"),
    "cosine": (CosineScheduler, "cosine"),
}


def scheduler_names() -> list[str]:
    """The names :func:`parse_scheduler` knows."""
    return list(_PARSERS)


def parse_scheduler(spec: str) -> Scheduler:
    """A scheduler from its command-line spelling: ``condot``, ``condot:0.01``, ``polynomial:2``,
    ``vp``, ``vp:0.1,20``, ``linear-vp``, ``cosine``.

    Example:
        >>> parse_scheduler("vp:0.1,20")
        VPScheduler(beta_min=0.1, beta_max=20.0)
    """
    name, _, args = str(spec).partition(":")
    if name not in _PARSERS:
        forms = ", ".join(form for _, form in _PARSERS.values())
        raise ValueError(f"scheduler must be one of {forms}, got {spec!r}")
    build, form = _PARSERS[name]
    if not args:
        return build()
    try:
        values = [float(a) for a in args.split(",")]
    except ValueError:
        raise ValueError(f"scheduler {spec!r} must be written {form} with numbers") from None
    try:
        return build(*values)
    except TypeError:
        raise ValueError(f"scheduler {spec!r} must be written {form}") from None
