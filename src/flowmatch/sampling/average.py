"""Few-step sampling with an average-velocity network (:mod:`flowmatch.models.average`):
x_{t+h} = x_t + h u(x_t, t, h) on a uniform grid of ``steps`` steps. One step is
x_1 = x_0 + u(x_0, 0, 1); with the exact u every number of steps gives the ODE's endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.models.average import call_average
from flowmatch.sampling.inputs import check_t_span, check_x0
from flowmatch.sampling.ode import SampleResult

__all__ = ["sample_average"]


def sample_average(
    model: Callable[..., Tensor],
    x0: Tensor,
    *,
    steps: int = 1,
    t_span: Sequence[float] = (0.0, 1.0),
    cond: Any = None,
    return_trajectory: bool = False,
) -> SampleResult:
    """Jump from ``t_span[0]`` to ``t_span[1]`` in ``steps`` average-velocity steps.

    Args:
        model: ``model(x, t, cond=None, h=None)``, the average velocity over [t, t + h].
        x0: initial states ``(n, *dims)``.
        steps: number of steps (one model evaluation each).
        t_span: start and end time.
        cond: passed to the model.
        return_trajectory: also return the ``steps + 1`` states.

    Returns:
        :class:`~flowmatch.sampling.ode.SampleResult` with ``nfe = steps``.

    Example:
        >>> import torch
        >>> exact = lambda x, t, cond=None, h=None: torch.ones_like(x)   # v = 1: x_1 = x_0 + 1
        >>> float(sample_average(exact, torch.zeros(2, 1)).x.sum())
        2.0
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t, cond=None, h=None), got {type(model).__name__}")
    steps = check_positive_int("steps", steps)
    x0 = check_x0(x0)
    t0, t1 = check_t_span(t_span)
    times = torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
    x = x0
    states = [x0] if return_trajectory else None
    with torch.no_grad():
        for k in range(steps):
            t = torch.full((x.shape[0],), float(times[k]), device=x.device, dtype=x.dtype)
            h = torch.full_like(t, float(times[k + 1] - times[k]))
            x = x + h.reshape(-1, *[1] * (x.dim() - 1)) * call_average(model, x, t, h, cond)
            if states is not None:
                states.append(x)
    trajectory = torch.stack(states) if states is not None else None
    return SampleResult(x=x, trajectory=trajectory, times=times.to(x.dtype), nfe=steps)
