"""Input checks shared by the metrics: sample sets, OT weights and timed trajectories.

Every helper returns float64 CPU data and raises a one-line ``ValueError``/``TypeError`` naming
the rule and the offending value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_finite


def _as_float64(name: str, x: Any) -> Tensor:
    """Return ``x`` (tensor, ndarray or nested list) as a detached float64 CPU tensor."""
    if isinstance(x, Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be a real tensor, got dtype {x.dtype}")
        return x.detach().to(device="cpu", dtype=torch.float64)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from None
    return torch.from_numpy(arr.copy())


def as_samples(name: str, x: Any) -> Tensor:
    """Validate a sample set ``(n, *dims)`` (or ``(n,)``) and return it flattened to ``(n, D)``."""
    t = _as_float64(name, x)
    if t.ndim == 0:
        raise ValueError(f"{name} must have shape (n, *dims) with n >= 1, got a scalar")
    if t.shape[0] < 1:
        raise ValueError(f"{name} must hold at least 1 sample, got shape {tuple(t.shape)}")
    t = t.reshape(t.shape[0], -1)
    if t.shape[1] < 1:
        raise ValueError(f"{name} must have at least 1 feature, got shape {tuple(t.shape)}")
    check_finite(name, t)
    return t


def as_pair(x: Any, y: Any, xname: str = "x", yname: str = "y") -> tuple[Tensor, Tensor]:
    """Validate two sample sets with the same flattened feature dimension."""
    xs, ys = as_samples(xname, x), as_samples(yname, y)
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(
            f"{xname} and {yname} must have the same feature dimension, got {xs.shape[1]} and {ys.shape[1]}"
        )
    return xs, ys


def as_weights(name: str, w: Any, n: int) -> np.ndarray:
    """Uniform weights when ``w`` is None, else ``w`` (length n, >= 0, positive sum) normalised."""
    if w is None:
        return np.full(n, 1.0 / n)
    arr = _as_float64(name, w).reshape(-1).numpy()
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have one weight per sample ({n}), got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0, got min {arr.min()!r}")
    s = float(arr.sum())
    if s <= 0:
        raise ValueError(f"{name} must have a positive sum, got {s!r}")
    return arr / s


def as_trajectory(trajectory: Any, times: Any) -> tuple[Tensor, Tensor]:
    """Validate a trajectory ``(T+1, n, *dims)`` with strictly increasing ``times`` ``(T+1,)``.

    Returns the trajectory flattened to ``(T+1, n, D)`` and the times, both float64.
    """
    traj = _as_float64("trajectory", trajectory)
    if traj.ndim < 3:
        raise ValueError(
            f"trajectory must have shape (T+1, n, *dims) with at least 3 axes, got shape {tuple(traj.shape)}"
        )
    if traj.shape[0] < 2 or traj.shape[1] < 1:
        raise ValueError(f"trajectory must hold >= 2 time points and >= 1 sample, got shape {tuple(traj.shape)}")
    traj = traj.reshape(traj.shape[0], traj.shape[1], -1)
    check_finite("trajectory", traj)
    ts = _as_float64("times", times)
    if ts.ndim != 1 or ts.shape[0] != traj.shape[0]:
        raise ValueError(
            f"times must have shape (T+1,) = ({traj.shape[0]},) to match the trajectory, got shape {tuple(ts.shape)}"
        )
    check_finite("times", ts)
    dt = ts[1:] - ts[:-1]
    if bool((dt <= 0).any()):
        k = int((dt <= 0).nonzero()[0])
        raise ValueError(
            f"times must be strictly increasing, got times[{k}]={float(ts[k])!r} >= times[{k + 1}]={float(ts[k + 1])!r}"
        )
    return traj, ts
