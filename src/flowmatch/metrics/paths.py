"""Costs of the paths a flow takes: kinetic energy, normalised path energy and straightness.

E           = mean_i sum_k ||x^i_{k+1} - x^i_k||^2 / (t_{k+1} - t_k)        (path energy)
NPE         = |E - W2^2(q0, q1)| / W2^2(q0, q1)
S           = mean_i sum_k (dt_k / (t_T - t_0)) ||v(t_k, x^i_k) - (x^i_T - x^i_0)/(t_T - t_0)||^2
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_finite, check_positive_int
from flowmatch.metrics._inputs import as_pair, as_trajectory
from flowmatch.metrics.distances import DEFAULT_NUM_ITER_MAX, ot_cost

__all__ = ["path_energy", "normalized_path_energy", "straightness"]


def path_energy(trajectory: Any, times: Any) -> float:
    """Kinetic energy of discrete paths, averaged over samples.

    .. math::
        E = \\frac{1}{n} \\sum_i \\sum_{k=0}^{T-1} \\frac{\\|x^i_{k+1} - x^i_k\\|^2}{t_{k+1} - t_k},

    the exact value of :math:`\\int \\|\\dot x(t)\\|^2 dt` for the piecewise-linear interpolation of
    each path over ``times`` (over [0, 1] when ``times`` spans it). For an Euler trajectory,
    ``x_{k+1} - x_k = dt_k v(t_k, x_k)``, so ``E`` equals the left-Riemann sum
    :math:`\\sum_k \\|v(t_k, x_k)\\|^2 dt_k` of the model's own velocity: the path integral of the
    NPE of Tong et al. (TMLR 2024, Table 2). By Cauchy-Schwarz
    :math:`E \\ge \\frac{1}{n} \\sum_i \\|x^i_T - x^i_0\\|^2 / (t_T - t_0)`, with equality iff every
    path is a straight line traversed at constant speed.

    Args:
        trajectory: ``(T+1, n, *dims)``, T >= 1.
        times: ``(T+1,)``, strictly increasing.
    """
    traj, ts = as_trajectory(trajectory, times)
    dx2 = (traj[1:] - traj[:-1]).pow(2).sum(-1)  # (T, n)
    dt = (ts[1:] - ts[:-1])[:, None]
    return float((dx2 / dt).sum(0).mean())


def normalized_path_energy(trajectory: Any, times: Any, x0: Any, x1: Any, *, w2sq: float | None = None) -> float:
    """Normalised path energy (NPE) of Tong et al. (TMLR 2024, Table 2).

    .. math::
        \\mathrm{NPE} = \\frac{|E - W_2^2(q_0, q_1)|}{W_2^2(q_0, q_1)},

    with ``E`` = :func:`path_energy` of the trajectory (the model's own paths from t = 0 to
    t = 1) and :math:`W_2^2(q_0, q_1)` the exact squared 2-Wasserstein distance between the test
    source samples ``x0`` and test target samples ``x1`` (the minimum kinetic energy of any flow
    between the two distributions, Benamou-Brenier). NPE = 0 for the dynamic OT flow.

    Args:
        trajectory: ``(T+1, n, *dims)`` on a grid ``times`` from 0 to 1.
        times: ``(T+1,)``, strictly increasing, ``times[0] = 0`` and ``times[-1] = 1`` (1e-6).
        x0: test source samples ``(n0, *dims)``.
        x1: test target samples ``(n1, *dims)``.
        w2sq: :math:`W_2^2` of ``x0`` and ``x1`` when already known (it depends only on the test
            sets, so a benchmark scoring many models on the same sets solves it once); None:
            solved here.

    Raises:
        ValueError: invalid input, ``times`` not spanning [0, 1], dimensions that disagree with
            the trajectory's, or ``W2(x0, x1) = 0`` (NPE undefined).
    """
    traj, ts = as_trajectory(trajectory, times)
    t0, t1 = float(ts[0]), float(ts[-1])
    if abs(t0) > 1e-6 or abs(t1 - 1.0) > 1e-6:
        raise ValueError(f"times must run from 0 to 1 for the NPE, got [{t0!r}, {t1!r}]")
    xs0, xs1 = as_pair(x0, x1, "x0", "x1")
    if xs0.shape[1] != traj.shape[2]:
        raise ValueError(
            f"x0 and the trajectory must have the same feature dimension, got {xs0.shape[1]} and {traj.shape[2]}"
        )
    if w2sq is None:
        w2sq = ot_cost(xs0, xs1, 2.0, None, None, DEFAULT_NUM_ITER_MAX)
    w2sq = float(w2sq)
    if not w2sq > 0:
        raise ValueError(f"NPE is undefined when W2^2(x0, x1) = 0, got {w2sq!r}")
    energy = path_energy(traj, ts)
    return abs(energy - w2sq) / w2sq


def _model_placement(model: Any, raw: Tensor) -> tuple[torch.device, torch.dtype]:
    """Device and dtype to call ``model`` with.

    Device: of the model's first parameter or buffer, else of ``raw``. Dtype: of the model's
    first floating-point parameter, else ``raw``'s when floating, else float32.
    """
    device, dtype = raw.device, None
    if isinstance(model, torch.nn.Module):
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        if first is not None:
            device = first.device
        for prm in model.parameters():
            if prm.is_floating_point():
                dtype = prm.dtype
                break
    if dtype is None:
        dtype = raw.dtype if raw.is_floating_point() else torch.float32
    return device, dtype


def straightness(
    model: Callable[..., Tensor],
    trajectory: Tensor,
    times: Tensor,
    cond: Tensor | None = None,
    *,
    batch_size: int = 8192,
) -> float:
    """Mean squared deviation of the model's velocity from each path's chord velocity.

    .. math::
        S = \\frac{1}{n} \\sum_i \\sum_{k=0}^{T-1} \\frac{\\Delta t_k}{t_T - t_0}
            \\Big\\| v(t_k, x^i_k) - \\frac{x^i_T - x^i_0}{t_T - t_0} \\Big\\|^2,

    the left-Riemann discretisation of the straightness of Liu et al. ("Flow Straight and Fast",
    ICLR 2023), :math:`\\int_0^1 E\\|(Z_1 - Z_0) - v(t, Z_t)\\|^2 dt`, evaluated along the
    model's own trajectory (Tong et al., TMLR 2024, discuss the same property: OT-CFM yields
    straighter flows). ``S = 0`` iff the model moves every point along its chord at constant
    speed. On [0, 1] the chord velocity is ``x_T - x_0``.

    The model is called as ``model(x, t)`` (or ``model(x, t, cond=c)`` when ``cond`` is given)
    under ``torch.no_grad()``, at most ``batch_size`` samples per call, on the device and dtype
    of the model's parameters (the trajectory's when it has none). Its train/eval mode is left
    unchanged: call ``model.eval()`` first if it uses dropout or batch norm.

    Args:
        model: velocity model ``(B, *dims), (B,) -> (B, *dims)``.
        trajectory: ``(T+1, n, *dims)``, usually the model's own Euler trajectory.
        times: ``(T+1,)``, strictly increasing.
        cond: optional conditioning with first axis ``n`` (sliced with the samples).
        batch_size: samples per model call.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    traj64, ts = as_trajectory(trajectory, times)
    raw = trajectory if isinstance(trajectory, Tensor) else torch.as_tensor(np.asarray(trajectory))
    n = traj64.shape[1]
    dims = tuple(raw.shape[2:])
    if cond is not None and (not hasattr(cond, "shape") or len(cond.shape) < 1 or cond.shape[0] != n):
        shape = tuple(cond.shape) if hasattr(cond, "shape") else type(cond).__name__
        raise ValueError(f"cond must have first axis n = {n} (one row per sample), got {shape}")
    device, dtype = _model_placement(model, raw)

    span = float(ts[-1] - ts[0])
    chord = (traj64[-1] - traj64[0]) / span  # (n, D)
    weights = (ts[1:] - ts[:-1]) / span  # (T,)
    total = 0.0
    with torch.no_grad():
        for k in range(traj64.shape[0] - 1):
            tk = float(ts[k])
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                xb = raw[k, start:stop].to(device=device, dtype=dtype)
                tb = torch.full((stop - start,), tk, device=device, dtype=dtype)
                if cond is None:
                    vb = model(xb, tb)
                else:
                    cb = cond[start:stop]
                    if isinstance(cb, Tensor):
                        cb = cb.to(device)
                    vb = model(xb, tb, cond=cb)
                if not isinstance(vb, Tensor) or tuple(vb.shape) != (stop - start, *dims):
                    got = tuple(vb.shape) if isinstance(vb, Tensor) else type(vb).__name__
                    raise ValueError(f"model output must have shape {(stop - start, *dims)}, got {got}")
                v64 = vb.detach().to(device="cpu", dtype=torch.float64).reshape(stop - start, -1)
                check_finite("model output", v64)
                dev2 = (v64 - chord[start:stop]).pow(2).sum(-1).sum()
                total += float(weights[k]) * float(dev2)
    return total / n
