"""Trajectories through a snapshot time course, colored by time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize

from flowmatch._utils.validate import check_positive_int
from flowmatch.plots._common import Projection, draw_single, save_figure, subsample, to_numpy
from flowmatch.plots.trajectories import trajectory_array

__all__ = ["plot_snapshot_trajectories"]


def plot_snapshot_trajectories(
    trajectory: Any,
    times: Any,
    snapshots: Any,
    path: str | os.PathLike[str],
    *,
    held_out: int | None = None,
    n_show: int = 200,
    title: str | None = None,
) -> Path:
    """Paths pushed through a time course over the observed populations, all colored by time.

    Args:
        trajectory: ``(T+1, n, D)`` states at ``times`` (e.g. :func:`flowmatch.trajectory.inference.push`
            with ``return_trajectory=True``).
        times: ``(T+1,)`` the time of each state, in the data's units.
        snapshots: a :class:`flowmatch.data.snapshots.Snapshots`; each population is scattered in the
            color of its time (viridis over the course), the ``held_out`` one with hollow black-edged
            markers and a legend entry.
        path: destination file. For D > 2 the plane is the top two principal components of all
            observed points.
        n_show: the first ``n_show`` paths are drawn.
    """
    n_show = check_positive_int("n_show", n_show)
    traj = trajectory_array("trajectory", trajectory, n_show)
    ts = to_numpy("times", times).reshape(-1)
    if ts.shape[0] != traj.shape[0]:
        raise ValueError(f"times must have one entry per trajectory state ({traj.shape[0]}), got {ts.shape[0]}")
    pops = [to_numpy("population", p) for p in snapshots.populations]
    snap_t = to_numpy("snapshot times", snapshots.times)
    if pops[0].shape[1] != traj.shape[2]:
        raise ValueError(
            f"trajectory and snapshots must have the same dimension, got {traj.shape[2]} and {pops[0].shape[1]}"
        )
    proj = Projection(np.concatenate(pops), "observed points")
    norm = Normalize(vmin=float(snap_t[0]), vmax=float(snap_t[-1]))
    cmap = colormaps["viridis"]

    def draw(ax: Any) -> None:
        for k, (t, pop) in enumerate(zip(snap_t, pops)):
            p2 = proj(subsample(pop, 2000))
            if k == held_out:
                ax.scatter(
                    p2[:, 0],
                    p2[:, 1],
                    s=10.0,
                    facecolors="none",
                    edgecolors="black",
                    lw=0.4,
                    alpha=0.5,
                    zorder=1,
                    label=f"held out: t={t:g}",
                )
            else:
                ax.scatter(p2[:, 0], p2[:, 1], s=3.0, color=cmap(norm(t)), alpha=0.35, lw=0, zorder=1)
        steps, n, d = traj.shape
        flat = proj(traj.reshape(steps * n, d)).reshape(steps, n, 2)
        segs = np.stack([flat[:-1], flat[1:]], axis=2).reshape(-1, 2, 2)  # (T n, 2, 2), time-major
        mid = np.repeat(0.5 * (ts[:-1] + ts[1:]), n)
        lc = LineCollection(list(segs), cmap=cmap, norm=norm, linewidths=0.6, alpha=0.5, zorder=2)
        lc.set_array(mid)
        ax.add_collection(lc)
        ax.scatter(flat[-1, :, 0], flat[-1, :, 1], s=5.0, c="#d62728", lw=0, zorder=3, label=f"pushed to t={ts[-1]:g}")
        cb = ax.figure.colorbar(lc, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label("time")
        ax.legend(loc="upper right", markerscale=2.0, fontsize="small")

    if title is None:
        title = f"{traj.shape[1]} trajectories through {len(pops)} time points"
    return save_figure(draw_single(proj, title, draw), path)
