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
from flowmatch.sampling.ode import SampleResult, sample

__all__ = ["sample_average", "sample_any"]


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


def sample_any(
    model: Callable[..., Tensor],
    x0: Tensor,
    *,
    solver: str,
    steps: int,
    cond: Any = None,
    chunk_size: int | None = None,
) -> SampleResult:
    """:func:`sample_average` for ``solver="average"`` (an average-velocity network's jumps), else
    :func:`flowmatch.sampling.ode.sample` with that ODE solver: the one entry point of evaluations
    that take a run's ``eval_solver``. ``chunk_size`` bounds the rows per call (a tensor ``cond``
    whose first dimension is ``x0``'s is split with it); chunked jumps equal unchunked ones."""
    if solver != "average":
        return sample(model, x0, solver=solver, steps=steps, cond=cond, chunk_size=chunk_size)
    n = x0.shape[0] if isinstance(x0, Tensor) and x0.dim() > 0 else 0
    if chunk_size is None or n <= check_positive_int("chunk_size", chunk_size):
        return sample_average(model, x0, steps=steps, cond=cond)
    parts = []
    for start in range(0, n, chunk_size):
        rows = slice(start, start + chunk_size)
        c = cond[rows] if isinstance(cond, Tensor) and cond.dim() > 0 and cond.shape[0] == n else cond
        parts.append(sample_average(model, x0[rows], steps=steps, cond=c))
    return SampleResult(x=torch.cat([p.x for p in parts]), trajectory=None, times=parts[0].times, nfe=steps)
