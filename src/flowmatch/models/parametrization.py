"""A network trained to predict x1, eps or the score, seen as a velocity field (and a score).

On an affine Gaussian path (:mod:`flowmatch.paths.conversions`) every parametrisation converts
into the velocity in closed form, so :class:`AsVelocity` wraps a network of any parametrisation
into the one model contract ``model(x, t, cond=None, mask=None) -> velocity``: every ODE solver,
the likelihood, guidance and the schedule change then take it unchanged. It also has
``score(x, t, ...)``, so :func:`flowmatch.sample_sde` takes it too, and :meth:`AsVelocity.predict`
gives any other parametrisation.

Conversion is linear in the prediction with weights summing to one under classifier-free
guidance, so guiding the wrapped network and guiding its velocity give the same field.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_choice
from flowmatch.models.contract import call_velocity
from flowmatch.paths.conversions import PARAMETRIZATIONS, check_regular, convert
from flowmatch.paths.schedulers import Scheduler

__all__ = ["AsVelocity", "as_velocity", "regular_times"]


class AsVelocity(nn.Module):
    """The velocity field of a network that predicts ``param`` on ``scheduler``'s Gaussian path.

    Args:
        model: the network, called ``model(x, t, cond=None, mask=None)``.
        scheduler: the scheduler of the path it was trained on.
        param: what it predicts: ``velocity``, ``x1``, ``eps`` or ``score``.
        t_range: the times the network is evaluated at (t is clamped into it). An eps or score
            network's velocity is singular where alpha_t = 0 (the noise end of CondOT, linear VP,
            cosine) and every conversion diverges where sigma' = -inf (the data end of VP and
            linear VP); :func:`regular_times` keeps 1e-3 away from such ends, as Song et al.
            (ICLR 2021) stop the reverse SDE at 1e-3 from the data.

    Example:
        >>> import torch
        >>> from flowmatch.models import MLP
        >>> from flowmatch.paths import CondOTScheduler
        >>> field = AsVelocity(MLP(2, hidden=16), CondOTScheduler(), "x1")
        >>> field(torch.randn(4, 2), torch.full((4,), 0.5)).shape
        torch.Size([4, 2])
    """

    def __init__(self, model: nn.Module, scheduler: Scheduler, param: str, t_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        lo, hi = (float(v) for v in t_range)
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"t_range must satisfy 0 <= t_min < t_max <= 1, got {t_range!r}")
        self.t_range = (lo, hi)
        if not isinstance(scheduler, Scheduler):
            raise TypeError(f"scheduler must be a Scheduler, got {type(scheduler).__name__}")
        self.model = model
        self.scheduler = scheduler
        self.param = check_choice("parametrisation", param, PARAMETRIZATIONS)

    def predict(self, target: str, x: Tensor, t: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
        """The network's prediction at (x, t) converted to ``target`` (one of the parametrisations)."""
        if self.t_range != (0.0, 1.0):
            t = t.clamp(*self.t_range)
        pred = call_velocity(self.model, x, t, cond, mask)
        out = convert(pred, self.param, target, x, t, self.scheduler)
        return out if mask is None else out * mask

    def forward(self, x: Tensor, t: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
        return self.predict("velocity", x, t, cond, mask)

    def score(self, x: Tensor, t: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
        """grad log p_t(x), by Tweedie's formula from the prediction."""
        return self.predict("score", x, t, cond, mask)


def regular_times(scheduler: Scheduler, param: str, eps: float = 1e-3) -> tuple[float, float]:
    """(t_min, t_max): 0 and 1, or ``eps`` from an end where the conversion of ``param`` to the
    velocity is singular (:func:`flowmatch.paths.conversions.check_regular`) or the scheduler's
    derivatives are infinite."""

    def regular(t: float) -> bool:
        out = scheduler(torch.tensor([t], dtype=torch.float64))
        if not all(bool(torch.isfinite(v).all()) for v in (out.d_alpha, out.d_sigma)):
            return False
        try:
            check_regular(scheduler, param, t)
        except ValueError:
            return False
        return True

    return (0.0 if regular(0.0) else eps, 1.0 if regular(1.0) else 1.0 - eps)


def as_velocity(model: nn.Module, scheduler: Scheduler, param: str) -> nn.Module:
    """``model`` itself for ``param="velocity"``, else :class:`AsVelocity` around it, evaluated at
    the :func:`regular_times` of the scheduler."""
    param = check_choice("parametrisation", param, PARAMETRIZATIONS)
    if param == "velocity":
        return model
    return AsVelocity(model, scheduler, param, t_range=regular_times(scheduler, param))
