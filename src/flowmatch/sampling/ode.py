"""ODE sampling for flow-matching velocity fields.

A trained flow-matching model ``v_theta(x, t)`` defines the probability-flow ODE

    dx/dt = v_theta(x_t, t, cond),    t in [0, 1],

whose flow maps the source (noise, ``t = 0``) onto the data distribution (``t = 1``)
(Lipman et al., "Flow Matching for Generative Modeling", ICLR 2023, Eq. 1;
Tong et al., "Improving and generalizing flow-based generative models with minibatch optimal
transport", TMLR 2024, Sec. 2). :func:`sample` integrates this ODE from ``t_span[0]`` to
``t_span[1]``; integrating from 1 to 0 inverts the map (data -> source).

Solvers
-------
Fixed-step explicit Runge--Kutta methods on a uniform grid ``t_k = t0 + k h``,
``h = (t1 - t0) / steps`` (``h < 0`` for reverse time), given by their Butcher tableaux
(``c | A / b``) and global order ``p`` (error ``O(|h|^p)``):

* ``euler`` (1 stage, order 1)::

      0 |
      --+--
        | 1

* ``midpoint`` (explicit midpoint, 2 stages, order 2)::

      0   |
      1/2 | 1/2
      ----+---------
          | 0    1

* ``heun`` (Heun / explicit trapezoid, 2 stages, order 2)::

      0 |
      1 | 1
      --+---------
        | 1/2  1/2

* ``rk4`` (classical Runge--Kutta, 4 stages, order 4)::

      0   |
      1/2 | 1/2
      1/2 | 0    1/2
      1   | 0    0    1
      ----+-------------------
          | 1/6  1/3  1/3  1/6

Adaptive embedded Runge--Kutta methods are delegated to ``torchdiffeq.odeint``
(Chen et al., NeurIPS 2018): ``dopri5`` (Dormand--Prince 5(4)), ``bosh3``
(Bogacki--Shampine 3(2)), ``adaptive_heun`` (Heun--Euler 2(1)) and ``dopri8``
(Dormand--Prince 8(7)), whichever the installed torchdiffeq provides. Step sizes are chosen so
that the local error estimate satisfies ``|err_i| <= atol + rtol * max(|x_i|, |x_i'|)`` in RMS norm.

torchdiffeq's ``bosh3`` and ``dopri8`` miss their tolerances by far more than that local control
suggests (up to 1210x and 144x where ``dopri5`` stays within 2x; measured in
``docs/solver_tolerances.md`` by ``benchmarks/solver_tolerances.py``), so :func:`sample` warns when
they are chosen (:class:`SolverToleranceWarning`); use ``dopri5`` when the tolerance matters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_positive_float, check_positive_int
from flowmatch.models.contract import call_velocity
from flowmatch.sampling.divergence import LogProbSolve
from flowmatch.sampling.inputs import check_sample_mask, check_t_span, check_x0, splits_with_rows

__all__ = ["SampleResult", "sample", "ode_solvers", "SolverToleranceWarning"]


class SolverToleranceWarning(UserWarning):
    """The chosen adaptive solver is known to miss its rtol / atol (docs/solver_tolerances.md)."""


#: measured worst miss of rtol / atol (end-point error over atol + rtol |x|, docs/solver_tolerances.md)
_TOLERANCE_MISS = {"bosh3": ("1210x", "RK23"), "dopri8": ("144x", "DOP853")}

# f(t, x) -> dx/dt with t a Python float; the wrapper expands t to a (B,) tensor for the model.
_VectorField = Callable[[float, Tensor], Tensor]
_StepFn = Callable[[_VectorField, float, Tensor, float], Tensor]


@dataclass
class SampleResult:
    """Result of :func:`sample`.

    Attributes:
        x: end point of the integration, shape ``(n, *dims)``.
        trajectory: states at ``times``, shape ``(T + 1, n, *dims)`` including both end points,
            or ``None`` unless ``return_trajectory=True``.
        times: the save times, shape ``(T + 1,)``. For fixed-step solvers this is always the full
            integration grid (``T = steps``); for adaptive solvers it is ``steps + 1`` evenly spaced
            points with ``return_trajectory=True`` and just ``(t0, t1)`` otherwise.
        nfe: number of model evaluations along one trajectory (``steps * stages`` for fixed-step
            solvers, the counted calls for adaptive ones); with ``chunk_size`` the maximum over
            chunks.
        log_prob: ``log p_1(x)`` of each sample, shape ``(n,)``, with ``sample(log_prob=True)``;
            else ``None``.
    """

    x: Tensor
    trajectory: Tensor | None
    times: Tensor
    nfe: int
    log_prob: Tensor | None = None

    def require_trajectory(self) -> Tensor:
        """The trajectory, which exists when it was asked for (``return_trajectory=True``)."""
        if self.trajectory is None:
            raise ValueError("this result has no trajectory: sample with return_trajectory=True")
        return self.trajectory


# --------------------------------------------------------------------------------------------
# Fixed-step solvers: each supplies only its step function and number of stages.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FixedStepSolver:
    step: _StepFn
    stages: int
    order: int


def _euler_step(f: _VectorField, t: float, x: Tensor, dt: float) -> Tensor:
    """Forward Euler: ``x' = x + h f(t, x)``."""
    return x + dt * f(t, x)


def _midpoint_step(f: _VectorField, t: float, x: Tensor, dt: float) -> Tensor:
    """Explicit midpoint: ``k1 = f(t, x)``; ``x' = x + h f(t + h/2, x + h/2 k1)``."""
    k1 = f(t, x)
    return x + dt * f(t + 0.5 * dt, x + (0.5 * dt) * k1)


def _heun_step(f: _VectorField, t: float, x: Tensor, dt: float) -> Tensor:
    """Heun (explicit trapezoid): ``k1 = f(t, x)``, ``k2 = f(t + h, x + h k1)``;
    ``x' = x + h/2 (k1 + k2)``."""
    k1 = f(t, x)
    k2 = f(t + dt, x + dt * k1)
    return x + (0.5 * dt) * (k1 + k2)


def _rk4_step(f: _VectorField, t: float, x: Tensor, dt: float) -> Tensor:
    """Classical RK4: ``k1 = f(t, x)``, ``k2 = f(t + h/2, x + h/2 k1)``,
    ``k3 = f(t + h/2, x + h/2 k2)``, ``k4 = f(t + h, x + h k3)``;
    ``x' = x + h/6 (k1 + 2 k2 + 2 k3 + k4)``."""
    half = 0.5 * dt
    k1 = f(t, x)
    k2 = f(t + half, x + half * k1)
    k3 = f(t + half, x + half * k2)
    k4 = f(t + dt, x + dt * k3)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


_FIXED_STEP: dict[str, _FixedStepSolver] = {
    "euler": _FixedStepSolver(_euler_step, stages=1, order=1),
    "midpoint": _FixedStepSolver(_midpoint_step, stages=2, order=2),
    "heun": _FixedStepSolver(_heun_step, stages=2, order=2),
    "rk4": _FixedStepSolver(_rk4_step, stages=4, order=4),
}

_ADAPTIVE_CANDIDATES = ("dopri5", "bosh3", "adaptive_heun", "dopri8")


def _available_adaptive() -> tuple[str, ...]:
    try:
        from torchdiffeq._impl.odeint import SOLVERS  # private, but the only list torchdiffeq has
    except Exception:  # pragma: no cover - only dopri5 is guaranteed by every torchdiffeq release
        return ("dopri5",)
    return tuple(name for name in _ADAPTIVE_CANDIDATES if name in SOLVERS)


_ADAPTIVE: tuple[str, ...] = _available_adaptive()


def ode_solvers() -> list[str]:
    """Names accepted by ``sample(solver=...)``: fixed-step first, then adaptive."""
    return list(_FIXED_STEP) + list(_ADAPTIVE)


# --------------------------------------------------------------------------------------------
# Integration
# --------------------------------------------------------------------------------------------


class _CountingField:
    """Wraps ``model(x, t, cond)`` as ``f(t, x)`` with ``t`` expanded to a ``(B,)`` tensor and
    counts the calls; with a mask the velocity is zero in the padding (so padding stays zero)."""

    def __init__(self, model: Callable[..., Tensor], cond: Any, mask: Tensor | None = None) -> None:
        self.model = model
        self.cond = cond
        self.mask = mask
        self.calls = 0

    def __call__(self, t: float | Tensor, x: Tensor) -> Tensor:
        self.calls += 1
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(()).expand(x.shape[0])
        v = call_velocity(self.model, x, tt, self.cond, self.mask)
        return v if self.mask is None else v * self.mask


def _integrate_fixed(
    field: _CountingField, x0: Tensor, grid: list[float], solver: _FixedStepSolver, keep: bool
) -> tuple[Tensor, list[Tensor] | None]:
    x = x0
    states = [x0] if keep else None
    for k in range(len(grid) - 1):
        x = solver.step(field, grid[k], x, grid[k + 1] - grid[k])
        if states is not None:
            states.append(x)
    return x, states


def _integrate_adaptive(
    field: _CountingField, x0: Tensor, times: Tensor, method: str, rtol: float, atol: float, max_steps: int | None
) -> Tensor:
    from torchdiffeq import odeint

    options = {} if max_steps is None else {"max_num_steps": max_steps}
    try:
        return odeint(field, x0, times, method=method, rtol=rtol, atol=atol, options=options)
    except AssertionError as err:
        if "max_num_steps" in str(err):
            raise RuntimeError(
                f"adaptive solver {method!r} exceeded max_steps={max_steps} "
                f"(rtol={rtol}, atol={atol}); raise max_steps or loosen the tolerances"
            ) from err
        raise


def sample(
    model: Callable[..., Tensor],
    x0: Tensor,
    *,
    solver: str = "euler",
    steps: int = 100,
    t_span: Sequence[float] = (0.0, 1.0),
    cond: Any = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    return_trajectory: bool = False,
    chunk_size: int | None = None,
    enable_grad: bool = False,
    max_steps: int | None = None,
    mask: Tensor | None = None,
    log_prob: bool = False,
    source_log_prob: Callable[[Tensor], Tensor] | None = None,
    divergence: str = "exact",
    probes: int = 1,
    probe_distribution: str = "rademacher",
    generator: torch.Generator | None = None,
) -> SampleResult:
    """Integrate ``dx/dt = model(x, t, cond)`` from ``t_span[0]`` to ``t_span[1]`` starting at ``x0``.

    This is the sampling step of (conditional) flow matching (Lipman et al. ICLR 2023, Eq. 1;
    Tong et al. TMLR 2024): pushing source samples ``x0 ~ p_0`` through the learned flow gives
    samples of ``p_1``. With ``t_span=(1.0, 0.0)`` the ODE is integrated backwards (negative
    step), inverting the forward map.

    Args:
        model: velocity field, called as ``model(x, t, cond=cond)`` with ``x`` of shape
            ``(B, *dims)`` and ``t`` a ``(B,)`` tensor of ``x``'s dtype and device; must return a
            tensor of shape ``(B, *dims)``.
        x0: initial states, floating tensor of shape ``(n, *dims)``, ``n >= 1``, finite.
        solver: one of :func:`ode_solvers`. Fixed-step ``euler`` (order 1), ``midpoint`` and
            ``heun`` (order 2), ``rk4`` (order 4); adaptive ``dopri5`` etc. via torchdiffeq
            (``bosh3`` and ``dopri8`` warn: :class:`SolverToleranceWarning`).
        steps: for fixed-step solvers the number of uniform intervals
            ``h = (t1 - t0) / steps`` (``nfe = steps * stages``). For adaptive solvers it is NOT
            a step count: with ``return_trajectory=True`` the trajectory is saved at ``steps + 1``
            evenly spaced times; otherwise it is unused.
        t_span: ``(t0, t1)``, two distinct finite times; ``t1 < t0`` integrates in reverse.
        cond: conditioning passed through to the model. A tensor whose leading dimension equals
            ``n`` is split along with ``x0`` when chunking; anything else is passed whole.
        atol: absolute tolerance of adaptive solvers (> 0; unused otherwise).
        rtol: relative tolerance of adaptive solvers (> 0; unused otherwise).
        return_trajectory: also return the states at all save times.
        chunk_size: integrate ``x0`` in chunks of at most this many rows (to bound memory) and
            concatenate. Fixed-step results equal the unchunked ones; adaptive step sizes are
            chosen per chunk, so results may differ within the tolerances. ``nfe`` is then the
            maximum over chunks.
        enable_grad: by default integration runs under ``torch.no_grad()``; ``True`` keeps the
            autograd graph (backpropagation through the solver, e.g. for CNF likelihoods).
        max_steps: adaptive solvers only: cap on accepted+rejected steps (RuntimeError when
            exceeded); ``None`` means torchdiffeq's default.
        mask: padded sequences: ``(n, 1, T)`` or x0's shape, 1 = valid element
            (:mod:`flowmatch.data.masks`); passed to the model as ``mask=``, the padding of x0 and
            of the velocity is zeroed, so padded frames stay exactly zero. Not with ``log_prob``
            (the density of padded samples is not one of the flow's densities: a ValueError).
        log_prob: also integrate ``dl/dt = div v`` in the same solve (the state ``[x, l]``,
            :mod:`~flowmatch.sampling.divergence`) and return
            ``log p_1(x_1) = log p_0(x_0) - int div v dt`` (Chen et al. 2018, Theorem 1) as
            ``log_prob``; adaptive solvers then control the error of ``[x, l]``.
        source_log_prob: ``log p_0``, called as ``source_log_prob(x0) -> (n,)``; ``None`` is
            ``N(0, I)``.
        divergence: ``"exact"`` or ``"hutchinson"`` (unbiased estimate, for high ``D``).
        probes: Hutchinson probes per trajectory, drawn once for all rows and reused at every time.
        probe_distribution: ``"rademacher"`` or ``"gaussian"`` probes.
        generator: source of the Hutchinson probes (the only random draw of :func:`sample`).

    Returns:
        :class:`SampleResult` with ``x`` of shape ``(n, *dims)``, ``trajectory`` of shape
        ``(T + 1, n, *dims)`` or ``None``, ``times`` of shape ``(T + 1,)``, ``nfe`` and
        ``log_prob`` ``(n,)`` or ``None``.

    Raises:
        ValueError: for an unknown solver, a non-positive ``steps``/``chunk_size``/``max_steps``,
            a bad ``t_span``, non-positive tolerances, ``max_steps`` with a fixed-step solver, an
            ``x0`` that is not a finite floating tensor of shape ``(n, *dims)``, a model output
            of the wrong shape, or ``log_prob`` with a mask or bad divergence options.
        TypeError: if ``model`` is not callable.
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t, cond=None), got {type(model).__name__}")
    solver = check_choice("solver", solver, ode_solvers())
    steps = check_positive_int("steps", steps)
    t0, t1 = check_t_span(t_span)
    atol = check_positive_float("atol", atol)
    rtol = check_positive_float("rtol", rtol)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    if max_steps is not None:
        if solver in _FIXED_STEP:
            raise ValueError(
                f"max_steps applies only to adaptive solvers ({', '.join(_ADAPTIVE)}), "
                f"got max_steps={max_steps!r} with solver {solver!r}"
            )
        max_steps = check_positive_int("max_steps", max_steps)
    x0 = check_x0(x0)
    if mask is not None:
        mask = check_sample_mask(mask, x0)
        x0 = x0 * mask
    lp = (
        LogProbSolve(x0, mask, source_log_prob, divergence, probes, probe_distribution, generator) if log_prob else None
    )
    if solver in _TOLERANCE_MISS:
        miss, ref = _TOLERANCE_MISS[solver]
        warnings.warn(
            f"torchdiffeq's {solver} misses rtol/atol by up to {miss} on smooth ODEs (SciPy's {ref}: "
            "within 4x); use dopri5 when the tolerance matters",
            SolverToleranceWarning,
            stacklevel=2,
        )

    n = x0.shape[0]
    fixed = _FIXED_STEP.get(solver)
    if fixed is not None:
        # Grid in float64 so that the end point is exactly t1 and dt is accurate.
        grid64 = torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
        grid = grid64.tolist()
        grid[0], grid[-1] = t0, t1
        times = grid64.to(dtype=x0.dtype, device=x0.device)
    else:
        n_save = steps + 1 if return_trajectory else 2
        times = torch.linspace(t0, t1, n_save, dtype=torch.float64).to(x0.dtype).to(x0.device)

    split_cond = splits_with_rows(cond, n)
    bounds = [(0, n)] if chunk_size is None else [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]

    ends: list[Tensor] = []
    trajs: list[Tensor] = []
    nfe = 0
    with torch.set_grad_enabled(bool(enable_grad)):
        for lo, hi in bounds:
            xc = x0[lo:hi] if len(bounds) > 1 else x0
            cc = cond[lo:hi] if (split_cond and len(bounds) > 1) else cond
            mc = mask[lo:hi] if (mask is not None and len(bounds) > 1) else mask
            field = _CountingField(model if lp is None else lp.field(model, lo, hi), cc, mc)
            xc = xc if lp is None else lp.state(xc)
            if fixed is not None:
                end, states = _integrate_fixed(field, xc, grid, fixed, return_trajectory)
                if states is not None:
                    trajs.append(torch.stack(states, dim=0))
            else:
                sol = _integrate_adaptive(field, xc, times, solver, rtol, atol, max_steps)
                end = sol[-1]
                if return_trajectory:
                    trajs.append(sol)
            ends.append(end)
            nfe = max(nfe, field.calls)

        log_p = None if lp is None else lp.log_prob(x0, ends)
    x = ends[0] if len(ends) == 1 else torch.cat(ends, dim=0)
    trajectory = None
    if return_trajectory:
        trajectory = trajs[0] if len(trajs) == 1 else torch.cat(trajs, dim=1)
    if lp is not None:
        x, trajectory = lp.states_x(x), None if trajectory is None else lp.states_x(trajectory)
    return SampleResult(x=x, trajectory=trajectory, times=times, nfe=nfe, log_prob=log_p)
