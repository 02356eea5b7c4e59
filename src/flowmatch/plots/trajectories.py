"""Sample paths of a flow, from start (t = 0) to end (t = 1) points, alone or per method."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from flowmatch._utils.validate import check_positive_int
from flowmatch.plots._common import (
    COLORS,
    Projection,
    as_points,
    check_finite_points,
    check_panels,
    check_same_dim,
    draw_panels,
    draw_single,
    panel_entry,
    save_figure,
    subsample,
    to_numpy,
)

__all__ = ["plot_trajectories", "plot_trajectory_panels"]


def trajectory_array(name: str, trajectory: Any, n_show: int) -> np.ndarray:
    """Validate ``(T+1, n, *dims)`` and return the first ``n_show`` paths as ``(T+1, n', D)``."""
    traj = to_numpy(name, trajectory)
    if traj.ndim < 3 or traj.shape[0] < 2 or traj.shape[1] < 1 or traj.size == 0:
        raise ValueError(f"{name} must have shape (T+1, n, *dims) with T+1 >= 2 and n >= 1, got shape {traj.shape}")
    traj = traj[:, :n_show].reshape(traj.shape[0], min(traj.shape[1], n_show), -1)
    check_finite_points(name, traj)
    return traj


def _draw_trajectories(ax: Any, proj: Projection, traj: np.ndarray, target: np.ndarray | None) -> list[np.ndarray]:
    """Draw ``(T+1, n, D)`` paths (and the target underneath, if any) on ``ax``, with a legend.

    Returns the drawn 2-D points (for computing shared axis limits).
    """
    steps, n, d = traj.shape
    flat = proj(traj.reshape(steps * n, d)).reshape(steps, n, 2)
    drawn = [flat.reshape(steps * n, 2)]
    if target is not None:
        t2 = proj(subsample(target, 5000))
        ax.scatter(
            t2[:, 0],
            t2[:, 1],
            s=3.0,
            c=COLORS["target"],
            alpha=0.25,
            lw=0,
            zorder=1,
            label=f"target (n={target.shape[0]})",
        )
        drawn.append(t2)
    segments = np.transpose(flat, (1, 0, 2))  # (n, T+1, 2)
    ax.add_collection(LineCollection(list(segments), colors="#6a3d9a", alpha=0.15, linewidths=0.6, zorder=2))
    ax.scatter(flat[0, :, 0], flat[0, :, 1], s=4.0, c="black", lw=0, zorder=3, label="start (t=0)")
    ax.scatter(flat[-1, :, 0], flat[-1, :, 1], s=4.0, c=COLORS["generated"], lw=0, zorder=4, label="end (t=1)")
    ax.legend(loc="upper right", markerscale=3.0, fontsize="small")
    return drawn


def _trajectory_scene(
    trajs: Sequence[np.ndarray], target: np.ndarray | None
) -> tuple[Callable[[Any, np.ndarray], list[np.ndarray]], Projection]:
    """``draw(ax, trajectory)`` (see :func:`_draw_trajectories`) and the shared projection.

    For D > 2 the plane is spanned by the top two principal components of the target, or of the
    end points of all ``(T+1, n, D)`` trajectories together when there is no target.
    """
    if target is not None:
        proj = Projection(target, "target")
    else:
        proj = Projection(np.concatenate([t[-1] for t in trajs], axis=0), "end points")

    def draw(ax: Any, traj: np.ndarray) -> list[np.ndarray]:
        return _draw_trajectories(ax, proj, traj, target)

    return draw, proj


def plot_trajectories(
    trajectory: Any, path: str | os.PathLike[str], *, target: Any = None, n_show: int = 500, title: str | None = None
) -> Path:
    """Draw sample paths of a flow: light lines from start (t = 0) to end (t = 1) points.

    Args:
        trajectory: ``(T+1, n, *dims)`` states on a time grid, T >= 1.
        path: destination file.
        target: optional ``(m, *dims)`` target samples drawn underneath; for D > 2 the plane is
            spanned by the top two principal components of the target (of the end points when no
            target is given).
        n_show: the first ``n_show`` paths are drawn.
        title: optional figure title.

    Returns:
        The destination path.

    Raises:
        ValueError: a trajectory with fewer than 3 axes, 2 time points or 1 sample; non-finite
            values; a target of a different flattened dimension.
    """
    n_show = check_positive_int("n_show", n_show)
    traj = trajectory_array("trajectory", trajectory, n_show)
    tgt = None if target is None else as_points("target", target)
    if tgt is not None:
        check_same_dim("trajectory", traj[-1], "target", tgt)
    draw, proj = _trajectory_scene([traj], tgt)
    if title is None:
        title = f"{traj.shape[1]} trajectories, {traj.shape[0] - 1} steps"
    return save_figure(draw_single(proj, title, lambda ax: draw(ax, traj)), path)


def _build_trajectory_panels(
    panels: Mapping[str, Any],
    *,
    target: Any = None,
    n_show: int = 300,
    title: str | None = None,
    ncols: int | None = None,
) -> Figure:
    """The figure of :func:`plot_trajectory_panels` (validated, drawn, not written)."""
    n_show = check_positive_int("n_show", n_show)
    entries = check_panels("panels", panels)
    names = [panel_entry("panels", k) for k, _ in entries]
    trajs = [trajectory_array(name, v, n_show) for name, (_, v) in zip(names, entries)]
    tgt = None if target is None else as_points("target", target)
    # Every entry must match the target, or the first entry when there is no target.
    ref_name, ref = ("target", tgt) if tgt is not None else (names[0], trajs[0][-1])
    for name, traj in zip(names, trajs):
        check_same_dim(ref_name, ref, name, traj[-1])
    draw, proj = _trajectory_scene(trajs, tgt)
    return draw_panels(proj, title, ncols, [k for k, _ in entries], trajs, draw)


def plot_trajectory_panels(
    panels: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    target: Any = None,
    n_show: int = 300,
    title: str | None = None,
    ncols: int | None = None,
) -> Path:
    """Compare flows: one subplot of sample paths (t = 0 -> t = 1) per entry, shared limits.

    Every subplot uses the same projection: for D > 2 the top two principal components of the
    target, or of the end points of all trajectories together when no target is given.

    Args:
        panels: ``name -> (T+1, n, *dims)`` trajectories (T and n may differ between entries);
            the names are the subplot titles, in the mapping's order.
        path: destination file.
        target: optional ``(m, *dims)`` target samples drawn underneath in every subplot.
        n_show: the first ``n_show`` paths of each trajectory are drawn.
        title: optional figure title (above all subplots).
        ncols: subplots per row; default ``min(len(panels), 4)``, at most ``len(panels)``.

    Returns:
        The destination path.

    Raises:
        ValueError: an empty mapping; a trajectory with fewer than 3 axes, 2 time points or 1
            sample; non-finite values; entries (or the target) of different flattened
            dimensions; a non-positive ``n_show``/``ncols``.
        TypeError: ``panels`` is not a mapping.
    """
    fig = _build_trajectory_panels(panels, target=target, n_show=n_show, title=title, ncols=ncols)
    return save_figure(fig, path)
