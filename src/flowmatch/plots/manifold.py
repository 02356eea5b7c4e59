"""Samples on a manifold as a flat chart: the sphere S^2 in Lambert's cylindrical equal-area
projection (longitude, z = sin latitude; areas are preserved, so point densities read true), the
torus T^2 as the square [-pi, pi)^2 with its opposite sides identified. The exact target density,
when given, is drawn beneath the points."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from flowmatch._utils.validate import check_choice
from flowmatch.plots._common import COLORS, save_figure, subsample

__all__ = ["chart", "plot_manifold_samples"]


def chart(kind: str, x: Tensor) -> np.ndarray:
    """``(n, 2)`` chart coordinates: ``sphere`` -> (longitude, z), ``torus`` -> the angles."""
    check_choice("manifold", kind, ("sphere", "torus"))
    a = x.detach().cpu().double()
    if kind == "sphere":
        if a.dim() != 2 or a.shape[1] != 3:
            raise ValueError(f"sphere points must have shape (n, 3), got {tuple(a.shape)}")
        return torch.stack([torch.atan2(a[:, 1], a[:, 0]), a[:, 2].clamp(-1, 1)], -1).numpy()
    if a.dim() != 2 or a.shape[1] != 2:
        raise ValueError(f"torus points must have shape (n, 2), got {tuple(a.shape)}")
    return a.numpy()


def _density_grid(kind: str, log_prob: Callable[[Tensor], Tensor], n: int = 120) -> tuple[np.ndarray, list[float]]:
    u = np.linspace(-math.pi, math.pi, 2 * n)
    v = np.linspace(-1, 1, n) if kind == "sphere" else np.linspace(-math.pi, math.pi, 2 * n)
    uu, vv = np.meshgrid(u, v)
    if kind == "sphere":
        r = np.sqrt(np.clip(1 - vv**2, 0, None))
        pts = np.stack([r * np.cos(uu), r * np.sin(uu), vv], -1).reshape(-1, 3)
    else:
        pts = np.stack([uu, vv], -1).reshape(-1, 2)
    with torch.no_grad():
        dens = log_prob(torch.from_numpy(pts)).exp().reshape(uu.shape).numpy()
    return dens, [-math.pi, math.pi, float(v[0]), float(v[-1])]


def plot_manifold_samples(
    kind: str,
    generated: Tensor,
    target: Tensor,
    path: str | os.PathLike[str],
    *,
    density: Callable[[Tensor], Tensor] | None = None,
    title: str | None = None,
    max_points: int = 3000,
) -> Path:
    """Two panels, target and generated points, on the chart of ``kind`` (module docstring)."""
    check_choice("manifold", kind, ("sphere", "torus"))
    fig = Figure(figsize=(11, 4.2 if kind == "sphere" else 5.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    grid = _density_grid(kind, density) if density is not None else None
    for ax, (name, pts) in zip(axes, (("target", target), ("generated", generated))):
        if grid is not None:
            ax.imshow(grid[0], extent=grid[1], origin="lower", aspect="auto", cmap="Greys", alpha=0.6)
        xy = subsample(chart(kind, pts), max_points)
        ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.5, color=COLORS[name], linewidths=0)
        ax.set_xlim(-math.pi, math.pi)
        ax.set_ylim(*((-1, 1) if kind == "sphere" else (-math.pi, math.pi)))
        ax.set_xlabel("longitude" if kind == "sphere" else "phi")
        ax.set_ylabel("z = sin(latitude)" if kind == "sphere" else "psi")
        ax.set_title(name)
        if kind == "torus":
            ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
