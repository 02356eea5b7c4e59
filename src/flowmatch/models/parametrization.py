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

from torch import Tensor, nn

from flowmatch._utils.validate import check_choice
from flowmatch.models.contract import call_velocity
from flowmatch.paths.conversions import PARAMETRIZATIONS, convert
from flowmatch.paths.schedulers import Scheduler

__all__ = ["AsVelocity", "as_velocity"]


class AsVelocity(nn.Module):
    """The velocity field of a network that predicts ``param`` on ``scheduler``'s Gaussian path.

    Args:
        model: the network, called ``model(x, t, cond=None, mask=None)``.
        scheduler: the scheduler of the path it was trained on.
        param: what it predicts: ``velocity``, ``x1``, ``eps`` or ``score``.

    Example:
        >>> import torch
        >>> from flowmatch.models import MLP
        >>> from flowmatch.paths import CondOTScheduler
        >>> field = AsVelocity(MLP(2, hidden=16), CondOTScheduler(), "x1")
        >>> field(torch.randn(4, 2), torch.full((4,), 0.5)).shape
        torch.Size([4, 2])
    """

    def __init__(self, model: nn.Module, scheduler: Scheduler, param: str):
        super().__init__()
        if not isinstance(scheduler, Scheduler):
            raise TypeError(f"scheduler must be a Scheduler, got {type(scheduler).__name__}")
        self.model = model
        self.scheduler = scheduler
        self.param = check_choice("parametrisation", param, PARAMETRIZATIONS)

    def predict(self, target: str, x: Tensor, t: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
        """The network's prediction at (x, t) converted to ``target`` (one of the parametrisations)."""
        pred = call_velocity(self.model, x, t, cond, mask)
        out = convert(pred, self.param, target, x, t, self.scheduler)
        return out if mask is None else out * mask

    def forward(self, x: Tensor, t: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
        return self.predict("velocity", x, t, cond, mask)

    def score(self, x: Tensor, t: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
        """grad log p_t(x), by Tweedie's formula from the prediction."""
        return self.predict("score", x, t, cond, mask)


def as_velocity(model: nn.Module, scheduler: Scheduler, param: str) -> nn.Module:
    """``model`` itself for ``param="velocity"``, else :class:`AsVelocity` around it."""
    param = check_choice("parametrisation", param, PARAMETRIZATIONS)
    return model if param == "velocity" else AsVelocity(model, scheduler, param)
