"""Scatter plots of generated samples over target (and source) samples, alone or per method."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from flowmatch._utils.validate import check_positive_int
from flowmatch.plots._common import (
    COLORS,
    Projection,
    as_points,
    check_panels,
    check_same_dim,
    draw_panels,
    draw_single,
    panel_entry,
    save_figure,
    subsample,
)

__all__ = ["plot_samples", "plot_sample_panels"]


def _draw_samples(
    ax: Any, proj: Projection, generated: np.ndarray, target: np.ndarray, source: np.ndarray | None, max_points: int
) -> list[np.ndarray]:
    """Scatter source (if any), target and generated ``(n, D)`` sets on ``ax``, with a legend.

    Returns the drawn 2-D points of every set (for computing shared axis limits).
    """
    size = 4.0
    drawn = []
    if source is not None:
        s2 = proj(subsample(source, max_points))
        ax.scatter(
            s2[:, 0], s2[:, 1], s=size, c=COLORS["source"], alpha=0.5, lw=0, label=f"source (n={source.shape[0]})"
        )
        drawn.append(s2)
    t2 = proj(subsample(target, max_points))
    ax.scatter(t2[:, 0], t2[:, 1], s=size, c=COLORS["target"], alpha=0.6, lw=0, label=f"target (n={target.shape[0]})")
    g2 = proj(subsample(generated, max_points))
    ax.scatter(
        g2[:, 0], g2[:, 1], s=size, c=COLORS["generated"], alpha=0.6, lw=0, label=f"generated (n={generated.shape[0]})"
    )
    drawn += [t2, g2]
    ax.legend(loc="upper right", markerscale=3.0, fontsize="small")
    return drawn


def _sample_scene(
    named: Sequence[tuple[str, Any]], target: Any, source: Any, max_points: int
) -> tuple[list[np.ndarray], Callable[[Any, np.ndarray], list[np.ndarray]], Projection]:
    """Validate the target, each named generated set (against the target), then the source.

    Returns the generated ``(n, D)`` sets, ``draw(ax, generated)`` (see :func:`_draw_samples`)
    and the projection, onto the target's principal plane for D > 2.
    """
    tgt = as_points("target", target)
    gens = []
    for name, value in named:
        gen = as_points(name, value)
        check_same_dim("target", tgt, name, gen)
        gens.append(gen)
    src = None
    if source is not None:
        src = as_points("source", source)
        check_same_dim("target", tgt, "source", src)
    proj = Projection(tgt, "target")

    def draw(ax: Any, gen: np.ndarray) -> list[np.ndarray]:
        return _draw_samples(ax, proj, gen, tgt, src, max_points)

    return gens, draw, proj


def plot_samples(
    generated: Any,
    target: Any,
    path: str | os.PathLike[str],
    *,
    source: Any = None,
    title: str | None = None,
    max_points: int = 2000,
) -> Path:
    """Scatter plot of generated samples over target samples (and source samples if given).

    Args:
        generated: ``(n, *dims)`` model samples.
        target: ``(m, *dims)`` reference data; for D > 2 its top two principal components define
            the plane onto which every set is projected (axis labels "PC1 of target ...").
        path: destination file (format from the suffix, PNG by default).
        source: optional ``(k, *dims)`` source samples (e.g. the noise at t = 0).
        title: optional figure title.
        max_points: at most this many evenly spaced points of each set are drawn.

    Returns:
        The destination path.

    Raises:
        ValueError: empty or non-finite input, or sets of different flattened dimensions.
    """
    max_points = check_positive_int("max_points", max_points)
    (gen,), draw, proj = _sample_scene([("generated", generated)], target, source, max_points)
    return save_figure(draw_single(proj, title, lambda ax: draw(ax, gen)), path)


def _build_sample_panels(
    panels: Mapping[str, Any],
    target: Any,
    *,
    source: Any = None,
    title: str | None = None,
    max_points: int = 2000,
    ncols: int | None = None,
) -> Figure:
    """The figure of :func:`plot_sample_panels` (validated, drawn, not written)."""
    max_points = check_positive_int("max_points", max_points)
    entries = check_panels("panels", panels)
    gens, draw, proj = _sample_scene([(panel_entry("panels", k), v) for k, v in entries], target, source, max_points)
    return draw_panels(proj, title, ncols, [k for k, _ in entries], gens, draw)


def plot_sample_panels(
    panels: Mapping[str, Any],
    target: Any,
    path: str | os.PathLike[str],
    *,
    source: Any = None,
    title: str | None = None,
    max_points: int = 2000,
    ncols: int | None = None,
) -> Path:
    """Compare methods: one scatter subplot per entry, each over the same target samples.

    Every subplot uses the same projection (for D > 2 the top two principal components of the
    target, as in :func:`plot_samples`) and identical axis limits (covering every drawn point),
    so the panels can be compared directly.

    Args:
        panels: ``name -> (n, *dims)`` generated samples; the names are the subplot titles, in
            the mapping's order.
        target: ``(m, *dims)`` reference data drawn in every subplot.
        path: destination file (format from the suffix, PNG by default).
        source: optional ``(k, *dims)`` source samples drawn in every subplot.
        title: optional figure title (above all subplots).
        max_points: at most this many evenly spaced points of each set are drawn.
        ncols: subplots per row; default ``min(len(panels), 4)``, at most ``len(panels)``.

    Returns:
        The destination path.

    Raises:
        ValueError: an empty mapping, an empty or non-finite set, sets of different flattened
            dimensions, or a non-positive ``max_points``/``ncols``.
        TypeError: ``panels`` is not a mapping.
    """
    fig = _build_sample_panels(panels, target, source=source, title=title, max_points=max_points, ncols=ncols)
    return save_figure(fig, path)
