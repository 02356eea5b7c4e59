"""Closed-form conversions between the four parametrisations of an affine Gaussian path's field.

On the path x_t = alpha_t x1 + sigma_t eps with eps ~ N(0, I) (:mod:`flowmatch.paths.schedulers`),
a network may predict

- the velocity v = alpha' E[x1 | x_t] + sigma' E[eps | x_t] (flow matching),
- the data x1 = E[x1 | x_t] (x1- or "sample"-prediction),
- the noise eps = E[eps | x_t] (DDPM's eps-prediction),
- the score s = grad log p_t(x_t) = -E[eps | x_t] / sigma_t (Tweedie's formula).

All four are linear in (x_t, E[x1 | x_t]) because x_t = alpha_t E[x1|x_t] + sigma_t E[eps|x_t], so
each converts into the others in closed form, for the conditional fields and for the marginal
ones a network learns alike. With D_t = alpha_t' sigma_t - sigma_t' alpha_t (> 0 when the
signal-to-noise ratio increases):

    x1  = (sigma v - sigma' x) / D            v = (sigma' x + D x1) / sigma
    eps = (alpha' x - alpha v) / D            v = (alpha' x - D eps) / alpha
    s   = (alpha v - alpha' x) / (sigma D)    v = (alpha' x + sigma D s) / alpha

and between x1, eps and s directly eps = (x - alpha x1) / sigma, x1 = (x - sigma eps) / alpha,
s = -eps / sigma.

The diffusion SDE behind the path (Song et al., ICLR 2021, in this time direction, t = 1 the
data): f(x, t) = (alpha' / alpha) x and g_t^2 = 2 sigma D / alpha, so that the probability-flow ODE
is v = f + (g^2 / 2) s (the seed's "f - g^2/2 score" in diffusion time tau = 1 - t) and the
reverse-time SDE is dx = [f + g^2 s] dt + g dW.

Singular points: at alpha_t = 0 (t = 0 for most schedulers) x1 is not identified by eps or s; at
sigma_t = 0 (t = 1) the score is not identified by x1 or v, and eps takes its limit
E[eps | x_t] -> 0 (so the velocity of an x1-prediction there is alpha' x1, which rk4's last stage
needs); see :func:`check_regular` for a start at t = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice
from flowmatch.paths.conditional import pad_t
from flowmatch.paths.schedulers import Scheduler, SchedulerOutput

__all__ = ["PARAMETRIZATIONS", "convert", "to_velocity", "to_x1_eps", "drift_and_diffusion", "check_regular"]

#: What a network may predict on an affine Gaussian path.
PARAMETRIZATIONS = ("velocity", "x1", "eps", "score")


def _coefficients(scheduler: Scheduler, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    out: SchedulerOutput = scheduler(t)
    a, s, da, ds = (pad_t(v, x) for v in (out.alpha, out.sigma, out.d_alpha, out.d_sigma))
    return a, s, da, ds, da * s - ds * a


def _nonzero(s: Tensor) -> Tensor:
    """s with its zeros replaced by ones: the branch of a torch.where not taken at s = 0 then stays
    finite, so its gradient (which autograd computes and multiplies by 0) is 0, not NaN."""
    return torch.where(s == 0, torch.ones_like(s), s)


def to_x1_eps(pred: Tensor, param: str, x_t: Tensor, t: Tensor, scheduler: Scheduler) -> tuple[Tensor, Tensor]:
    """(x1, eps) predicted by ``pred`` of parametrisation ``param`` at (x_t, t)."""
    param = check_choice("parametrisation", param, PARAMETRIZATIONS)
    a, s, da, ds, d = _coefficients(scheduler, t, x_t)
    if param == "velocity":
        return (s * pred - ds * x_t) / d, (da * x_t - a * pred) / d
    if param == "x1":  # at sigma = 0 (the data end) eps is not identified: its limit E[eps | x1] = 0
        return pred, torch.where(s == 0, torch.zeros_like(x_t), (x_t - a * pred) / _nonzero(s))
    eps = pred if param == "eps" else -s * pred
    return (x_t - s * eps) / a, eps


def to_velocity(pred: Tensor, param: str, x_t: Tensor, t: Tensor, scheduler: Scheduler) -> Tensor:
    """The velocity v(x_t, t) given the prediction ``pred`` of parametrisation ``param``."""
    param = check_choice("parametrisation", param, PARAMETRIZATIONS)
    if param == "velocity":
        return pred
    a, s, da, ds, d = _coefficients(scheduler, t, x_t)
    if param == "x1":  # the limit alpha' x1 where sigma = 0 (E[eps | x_t] -> 0 at the data end)
        return torch.where(s == 0, da * pred, (ds * x_t + d * pred) / _nonzero(s))
    if param == "eps":
        return (da * x_t - d * pred) / a
    return (da * x_t + s * d * pred) / a


def convert(pred: Tensor, source: str, target: str, x_t: Tensor, t: Tensor, scheduler: Scheduler) -> Tensor:
    """Convert ``pred`` from parametrisation ``source`` to ``target`` (one of :data:`PARAMETRIZATIONS`)
    at (x_t, t) on ``scheduler``'s path; shapes: x_t and pred (B, *dims), t (B,).

    Example:
        >>> import torch
        >>> from flowmatch.paths.schedulers import CondOTScheduler
        >>> x, t, v = torch.randn(4, 2), torch.full((4,), 0.3), torch.randn(4, 2)
        >>> eps = convert(v, "velocity", "eps", x, t, CondOTScheduler())
        >>> torch.allclose(convert(eps, "eps", "velocity", x, t, CondOTScheduler()), v, atol=1e-6)
        True
    """
    source = check_choice("parametrisation", source, PARAMETRIZATIONS)
    target = check_choice("parametrisation", target, PARAMETRIZATIONS)
    if source == target:
        return pred
    if target == "velocity":
        return to_velocity(pred, source, x_t, t, scheduler)
    a, s, da, ds, d = _coefficients(scheduler, t, x_t)
    if source == "velocity" and target == "score":
        return (a * pred - da * x_t) / (s * d)
    x1, eps = to_x1_eps(pred, source, x_t, t, scheduler)
    if target == "x1":
        return x1
    if target == "eps":
        return eps
    return -eps / s


def drift_and_diffusion(scheduler: Scheduler, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """The linear drift f = (alpha'/alpha) x and the squared diffusion g^2 = 2 sigma D / alpha of the
    path's SDE at (x, t) (module docstring); g^2 has shape (B, 1, ..., 1)."""
    a, s, da, _, d = _coefficients(scheduler, t, x)
    return (da / a) * x, 2 * s * d / a


def check_regular(scheduler: Scheduler, param: str, t: float) -> None:
    """Raise a one-line ValueError when converting ``param`` to the velocity is singular at time t
    (a zero denominator: alpha_t for eps and score, D_t for every one; sigma_t = 0 is the data end,
    where x1 takes its limit)."""
    out = scheduler(torch.tensor([float(t)], dtype=torch.float64))
    a, s = float(out.alpha), float(out.sigma)
    d = float(out.d_alpha * out.sigma - out.d_sigma * out.alpha)
    bad = {"eps": a == 0, "score": a == 0}.get(param, False) or d == 0
    if bad:
        raise ValueError(
            f"the {param} parametrisation of {scheduler!r} is singular at t = {t} "
            f"(alpha = {a}, sigma = {s}, alpha' sigma - sigma' alpha = {d}); start the solve at t > {t}"
        )
