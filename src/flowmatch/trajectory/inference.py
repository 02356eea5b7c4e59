"""Pushing populations through a learned time course, and the leave-one-time-point-out evaluation.

- :func:`push` carries any population from time a to time b (forward or backward) with the
  probability-flow ODE dx/dt = v(t, x), or with the SDE dX = [v + (sigma^2/2) s] dt + sigma dW of a
  model that learned a score (SB-CFM), piecewise over the snapshot times so that every interval
  gets the same number of steps.
- :func:`holdout_w1` is the paper's interpolation metric (Tong et al. TMLR 2024, Table 4): train
  without the intermediate time point k, push the population of t_{k-1} to t_k and report the
  exact W1 (POT) to the held-out population.
- :func:`mccann_interpolation` is the straight-line baseline: match the populations of t_{k-1} and
  t_{k+1} by exact OT and place every matched pair at (1 - s) x + s y with
  s = (t_k - t_{k-1}) / (t_{k+1} - t_{k-1}) (McCann's displacement interpolation of the
  empirical measures; it is what OT-CFM's path would give with no learning across intervals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.data.snapshots import Snapshots
from flowmatch.metrics import w1
from flowmatch.sampling.ode import SampleResult, sample
from flowmatch.sampling.sde import sample_sde

__all__ = ["push", "HoldoutResult", "holdout_w1", "step_w1", "mccann_interpolation", "baseline_holdout_w1"]


def _pieces(t_from: float, t_to: float, knots: Sequence[float] | None, steps: int) -> list[tuple[float, float, int]]:
    """Split [t_from, t_to] at the knots inside it; each piece gets ``steps`` times its share of its
    knot interval (at least 1)."""
    lo, hi = min(t_from, t_to), max(t_from, t_to)
    ks = sorted(float(k) for k in (knots or ()))
    inner = [k for k in ks if lo < k < hi]
    cuts = [lo, *inner, hi]
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        left = [k for k in ks if k <= a]
        right = [k for k in ks if k >= b]
        span = (right[0] - left[-1]) if left and right else (b - a)
        out.append((a, b, max(1, round(steps * (b - a) / span))))
    if t_to < t_from:
        out = [(b, a, n) for a, b, n in reversed(out)]
    return out


def push(
    model: Any,
    x: Tensor,
    t_from: float,
    t_to: float,
    *,
    knots: Sequence[float] | None = None,
    steps: int = 100,
    solver: str = "euler",
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> SampleResult:
    """Carry the population ``x`` (n, D) from time ``t_from`` to ``t_to`` (either order) through ``model``.

    ``sigma=None`` integrates the ODE dx/dt = v(t, x) with ``solver``; a number integrates the SDE
    with diffusion ``sigma`` by Euler-Maruyama (:func:`flowmatch.sample_sde`; backward in time, its
    time reversal), which needs ``model.score``. ``knots`` (e.g. the snapshot times) cut the span:
    each knot interval gets ``steps`` steps (a partial one its share); without knots the whole span
    gets ``steps``. Returns a :class:`~flowmatch.sampling.ode.SampleResult` whose trajectory (if asked)
    and times run over all pieces; ``nfe`` is the total.
    """
    steps = check_positive_int("steps", steps)
    t_from, t_to = float(t_from), float(t_to)
    if not (math.isfinite(t_from) and math.isfinite(t_to)) or t_from == t_to:
        raise ValueError(f"push needs two distinct finite times, got {t_from!r} and {t_to!r}")
    states, times, nfe = [], [], 0
    for i, (a, b, n) in enumerate(_pieces(t_from, t_to, knots, steps)):
        if sigma is None:
            res = sample(model, x, solver=solver, steps=n, t_span=(a, b), return_trajectory=return_trajectory)
        else:
            res = sample_sde(
                model, x, sigma=sigma, steps=n, t_span=(a, b), generator=generator, return_trajectory=return_trajectory
            )
        x, nfe = res.x, nfe + res.nfe
        if return_trajectory:
            states.append(res.require_trajectory()[0 if i == 0 else 1 :])
            times.append(res.times if i == 0 else res.times[1:])
    if return_trajectory:
        return SampleResult(x=x, trajectory=torch.cat(states), times=torch.cat(times), nfe=nfe)
    return SampleResult(x=x, trajectory=None, times=torch.tensor([t_from, t_to], dtype=x.dtype), nfe=nfe)


@dataclass
class HoldoutResult:
    """W1 between the population pushed from time point ``index - 1`` and the one observed at ``index``."""

    index: int
    time: float
    w1: float
    n_pushed: int
    n_observed: int
    sampler: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def holdout_w1(
    model: Any,
    snapshots: Snapshots,
    index: int,
    *,
    steps: int = 100,
    solver: str = "euler",
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    max_points: int | None = None,
) -> HoldoutResult:
    """Leave-one-time-point-out W1 (Tong et al. TMLR 2024, Table 4).

    ``snapshots`` is the full course (with time point ``index``); the model was trained without it.
    The population of ``index - 1`` is pushed to ``times[index]`` (ODE, or SDE with ``sigma``;
    ``steps`` per snapshot interval) and compared by exact W1 with the population of ``index``.
    ``max_points`` uses only the first that many points of each (W1 costs O(n^3)).
    """
    k = snapshots.check_index(index, intermediate=True, what="holdout")
    return _step(
        model, snapshots, k, steps=steps, solver=solver, sigma=sigma, generator=generator, max_points=max_points
    )


def step_w1(
    model: Any,
    snapshots: Snapshots,
    *,
    steps: int = 100,
    solver: str = "euler",
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    max_points: int | None = None,
) -> list[HoldoutResult]:
    """The W1 of :func:`holdout_w1` at every time point k >= 1, each pushed from k - 1 (the fit of
    a model trained on all time points)."""
    return [
        _step(model, snapshots, k, steps=steps, solver=solver, sigma=sigma, generator=generator, max_points=max_points)
        for k in range(1, len(snapshots))
    ]


def _step(model, snapshots: Snapshots, k: int, *, steps, solver, sigma, generator, max_points) -> HoldoutResult:
    dev = next(model.parameters()).device if hasattr(model, "parameters") else torch.device("cpu")
    x = snapshots.populations[k - 1][:max_points].to(dev)
    y = snapshots.populations[k][:max_points]
    with torch.no_grad():
        out = push(
            model,
            x,
            float(snapshots.times[k - 1]),
            float(snapshots.times[k]),
            knots=snapshots.times.tolist(),
            steps=steps,
            solver=solver,
            sigma=sigma,
            generator=generator,
        )
    sampler = f"{solver} ODE" if sigma is None else f"Euler-Maruyama SDE (sigma {sigma:g})"
    return HoldoutResult(
        index=k,
        time=float(snapshots.times[k]),
        w1=w1(out.x.cpu(), y),
        n_pushed=int(x.shape[0]),
        n_observed=int(y.shape[0]),
        sampler=f"{sampler}, {steps} steps",
    )


def mccann_interpolation(xa: Tensor, xb: Tensor, s: float, *, generator: torch.Generator | None = None) -> Tensor:
    """Straight-line (displacement) interpolation at fraction ``s`` in [0, 1] between the empirical
    measures of ``xa`` (n, D) and ``xb`` (m, D) under the exact OT plan P for ||x - y||^2 (POT emd):
    row i of xa is matched with xb[j], j ~ P[i] / P[i].sum() (for n = m the plan is a permutation and
    j is unique), and placed at (1 - s) xa[i] + s xb[j]. Returns (n, D)."""
    import ot

    if not 0.0 <= float(s) <= 1.0:
        raise ValueError(f"interpolation fraction s must lie in [0, 1], got {s!r}")
    a = xa.detach().double().cpu()
    b = xb.detach().double().cpu()
    cost = torch.cdist(a, b) ** 2
    plan = torch.from_numpy(
        ot.emd(
            np.full(a.shape[0], 1.0 / a.shape[0]),
            np.full(b.shape[0], 1.0 / b.shape[0]),
            cost.numpy(),
            numItermax=10_000_000,
        )
    )
    rows = plan / plan.sum(dim=1, keepdim=True)
    j = torch.multinomial(rows, 1, generator=generator).squeeze(1)
    return ((1 - s) * a + s * b[j]).to(xa.dtype)


def baseline_holdout_w1(
    snapshots: Snapshots, index: int, *, generator: torch.Generator | None = None, max_points: int | None = None
) -> HoldoutResult:
    """W1 of :func:`mccann_interpolation` between time points ``index - 1`` and ``index + 1``, evaluated
    at ``times[index]``, to the held-out population of ``index``."""
    k = snapshots.check_index(index, intermediate=True, what="holdout")
    t = snapshots.times
    s = float((t[k] - t[k - 1]) / (t[k + 1] - t[k - 1]))
    xa, xb = snapshots.populations[k - 1][:max_points], snapshots.populations[k + 1][:max_points]
    y = snapshots.populations[k][:max_points]
    pred = mccann_interpolation(xa, xb, s, generator=generator)
    return HoldoutResult(
        index=k,
        time=float(t[k]),
        w1=w1(pred, y),
        n_pushed=int(xa.shape[0]),
        n_observed=int(y.shape[0]),
        sampler="straight-line OT interpolation",
    )
