"""Sampling a velocity field trained on one scheduler along another, without retraining.

Two affine Gaussian paths x_t = alpha_t x1 + sigma_t x0 and xbar_r = alphabar_r x1 + sigmabar_r x0
with the same coupling are related by a scale-time map (Lipman et al. 2024, "Flow Matching Guide
and Code", Section 4.8; Meta flow_matching's ``ScheduleTransformedModel``): the time
t_r = rho^{-1}(rhobar(r)) with the same signal-to-noise ratio rho = alpha / sigma and the scale
s_r = sigmabar_r / sigma_{t_r} = alphabar_r / alpha_{t_r} give xbar_r = s_r x_{t_r}, so the new
marginal velocity is

    ubar_r(x) = (s_r' / s_r) x + s_r t_r' u_{t_r}(x / s_r).

The flows have the same end points whenever s_0 = s_1 = 1 (both schedulers start at pure noise and
end at the data), so the endpoint law of the ODE is unchanged, exactly for the exact field.

Numerics. With D = alpha' sigma - sigma' alpha, the time derivative t_r' = rhobar'(r) / rho'(t_r)
is written t_r' = (Dbar / sigmabar^2)(sigma^2 / D) where the noise dominates and
t_r' = (Dbar / alphabar^2)(alpha^2 / D) (through the inverse ratio sigma / alpha) where the signal
dominates, and the scale likewise through sigma or alpha: every term stays finite at r = 1, where
sigma = 0 and Meta's formula divides 0 by 0. Times of the new scheduler whose ratio the old one
never reaches (a VP scheduler's alpha_0 > 0, a sigma_min > 0) are clamped to [0, 1], and so are new
times outside [0, 1] (torchdiffeq's dopri5 evaluates trial stages past the end of the interval,
where a scheduler such as CondOT's sigma = 1 - t turns negative).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.models.contract import call_velocity
from flowmatch.paths.conditional import pad_t
from flowmatch.paths.schedulers import Scheduler

__all__ = ["ScheduleTransformedModel"]


class ScheduleTransformedModel(nn.Module):
    """The velocity field of ``model`` (trained on ``original``) along the ``new`` scheduler.

    Args:
        model: a velocity field ``model(x, t, cond=None, mask=None)`` (wrap other parametrisations
            with :class:`flowmatch.models.parametrization.AsVelocity` first).
        original: the scheduler it was trained on.
        new: the scheduler to sample along.

    Example:
        >>> import torch
        >>> from flowmatch.paths import CondOTScheduler, CosineScheduler
        >>> field = lambda x, t, cond=None: -x
        >>> cosine = ScheduleTransformedModel(field, CondOTScheduler(), CosineScheduler())
        >>> cosine(torch.ones(2, 3), torch.full((2,), 0.5)).shape
        torch.Size([2, 3])
    """

    def __init__(self, model: Any, original: Scheduler, new: Scheduler):
        super().__init__()
        for name, s in (("original", original), ("new", new)):
            if not isinstance(s, Scheduler):
                raise TypeError(f"{name} must be a Scheduler, got {type(s).__name__}")
        self.model = model
        self.original = original
        self.new = new

    def time_and_scale(self, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(t_r, s_r, t_r', s_r' / s_r) at the new times r, each of r's shape."""
        nb = self.new(r)
        t = self.original.snr_inverse(nb.alpha / nb.sigma).clamp(0.0, 1.0)
        ob = self.original(t)
        d_new = nb.d_alpha * nb.sigma - nb.d_sigma * nb.alpha
        d_old = ob.d_alpha * ob.sigma - ob.d_sigma * ob.alpha
        signal = nb.alpha >= nb.sigma
        # the ratio through whichever of alpha, sigma is larger (module docstring)
        big_new = torch.where(signal, nb.alpha, nb.sigma)
        big_old = torch.where(signal, ob.alpha, ob.sigma)
        d_big_new = torch.where(signal, nb.d_alpha, nb.d_sigma)
        d_big_old = torch.where(signal, ob.d_alpha, ob.d_sigma)
        dt = (d_new / (big_new * big_new)) * (big_old * big_old / d_old)
        s = big_new / big_old
        ds_over_s = d_big_new / big_new - d_big_old * dt / big_old
        return t, s, dt, ds_over_s

    def forward(self, x: Tensor, r: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
        t, s, dt, ds_over_s = self.time_and_scale(r.clamp(0.0, 1.0))
        s_, dt_, ds_ = pad_t(s, x), pad_t(dt, x), pad_t(ds_over_s, x)
        u = call_velocity(self.model, x / s_, t.to(x.dtype), cond, mask)
        return ds_ * x + s_ * dt_ * u
