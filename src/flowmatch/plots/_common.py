"""Shared plumbing of the figures: input checks, 2-D projection, figure layout and atomic writes.

Nothing here imports ``matplotlib.pyplot``: figures are :class:`matplotlib.figure.Figure` objects
with an Agg canvas attached, so no global figure state is created and the backend is untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowmatch._utils.io import write_error
from flowmatch._utils.validate import check_positive_int

_DPI = 120
COLORS = {"source": "#9a9a9a", "target": "#1f77b4", "generated": "#d62728"}


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def to_numpy(name: str, x: Any) -> np.ndarray:
    """Return ``x`` (tensor, ndarray, list) as a float64 ndarray."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from None


def check_finite_points(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite, got {int(bad.sum())} NaN/Inf value(s) (first at index {first})")


def as_points(name: str, x: Any) -> np.ndarray:
    """Validate samples ``(n, *dims)`` (or ``(n,)``) and flatten them to ``(n, D)``, n >= 1."""
    arr = to_numpy(name, x)
    if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{name} must hold at least 1 sample, got shape {arr.shape}")
    arr = arr.reshape(arr.shape[0], -1)
    check_finite_points(name, arr)
    return arr


def check_same_dim(ref_name: str, ref: np.ndarray, name: str, arr: np.ndarray) -> None:
    if arr.shape[1] != ref.shape[1]:
        raise ValueError(
            f"{name} and {ref_name} must have the same feature dimension, got {arr.shape[1]} and {ref.shape[1]}"
        )


def subsample(arr: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` evenly spaced rows (deterministic; keeps the order)."""
    if arr.shape[0] <= max_points:
        return arr
    idx = np.unique(np.linspace(0, arr.shape[0] - 1, max_points).round().astype(np.int64))
    return arr[idx]


class Projection:
    """Map ``(n, D)`` points to 2D: identity for D = 2, PCA of a reference set for D > 2."""

    def __init__(self, reference: np.ndarray, ref_name: str) -> None:
        self.dim = reference.shape[1]
        if self.dim > 2:
            self.mean = reference.mean(0)
            centered = reference - self.mean
            _, s, vt = np.linalg.svd(centered, full_matrices=True)
            self.components = vt[:2]  # (2, D), always 2 rows with full_matrices
            var = np.zeros(2)
            var[: min(2, s.shape[0])] = s[:2] ** 2
            total = float((s**2).sum())
            frac = var / total if total > 0 else np.zeros(2)
            self.labels = (
                f"PC1 of {ref_name} ({100 * frac[0]:.0f}% var, D={self.dim})",
                f"PC2 of {ref_name} ({100 * frac[1]:.0f}% var)",
            )
        elif self.dim == 2:
            self.labels = ("x1", "x2")
        else:
            self.labels = ("x1", "(1-D data)")

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        if self.dim > 2:
            return (arr - self.mean) @ self.components.T
        if self.dim == 2:
            return arr
        return np.concatenate([arr, np.zeros_like(arr)], axis=1)


def check_panels(name: str, panels: Any) -> list[tuple[str, Any]]:
    """A non-empty mapping ``name -> value`` as a list of ``(str(key), value)`` pairs."""
    if not isinstance(panels, Mapping):
        raise TypeError(f"{name} must be a mapping of name -> data, got {type(panels).__name__}")
    if len(panels) == 0:
        raise ValueError(f"{name} must hold at least 1 entry, got 0")
    return [(str(k), v) for k, v in panels.items()]


def panel_entry(name: str, key: str) -> str:
    return f"{name}[{key!r}]"


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def new_figure(figsize: tuple[float, float]) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def finish_figure(fig: Figure, ax: Any, title: str | None, labels: Sequence[str]) -> None:
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if title is not None:
        ax.set_title(str(title))
    fig.tight_layout()


def _shared_limits(
    points: Sequence[np.ndarray], margin: float = 0.05
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits covering every drawn point, padded by ``margin`` of the span (1 if zero)."""
    allp = np.concatenate([p.reshape(-1, 2) for p in points], axis=0)
    lims = []
    for lo, hi in zip(allp.min(0), allp.max(0)):
        span = float(hi - lo)
        pad = margin * span if span > 0 else 1.0
        lims.append((float(lo) - pad, float(hi) + pad))
    return lims[0], lims[1]


def _grid(n: int, ncols: int | None) -> tuple[int, int]:
    """(nrows, ncols) for ``n`` panels; default ``min(n, 4)`` columns, at most ``n``."""
    cols = min(n, 4) if ncols is None else min(check_positive_int("ncols", ncols), n)
    return -(-n // cols), cols


def _new_panel_figure(n: int, ncols: int | None, panel_size: float = 4.0) -> tuple[Figure, list[Any]]:
    """A figure with exactly ``n`` subplots on a grid, all sharing x and y with the first."""
    nrows, cols = _grid(n, ncols)
    fig = Figure(figsize=(panel_size * cols, panel_size * nrows + 0.3), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes: list[Any] = []
    for i in range(n):
        first = axes[0] if axes else None
        axes.append(fig.add_subplot(nrows, cols, i + 1, sharex=first, sharey=first))
    return fig, axes


def _finish_panels(
    fig: Figure,
    axes: Sequence[Any],
    names: Sequence[str],
    points: Sequence[np.ndarray],
    labels: Sequence[str],
    title: str | None,
    equal: bool,
) -> None:
    """Identical limits on every panel, titles = names.

    Axis labels and tick labels are kept on the first column and on every panel with no panel
    below it (the last row, and the columns of a partial last row's row above).
    """
    xlim, ylim = _shared_limits(points)
    cols = axes[0].get_subplotspec().get_gridspec().ncols
    for i, (ax, name) in enumerate(zip(axes, names)):
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        if equal:
            ax.set_aspect("equal", adjustable="box")
        ax.set_title(name)
        if i + cols >= len(axes):  # nothing below this panel
            ax.set_xlabel(labels[0])
        else:
            ax.tick_params(labelbottom=False)
        if i % cols == 0:
            ax.set_ylabel(labels[1])
        else:
            ax.tick_params(labelleft=False)
    if title is not None:
        fig.suptitle(str(title))
    fig.tight_layout()


def draw_single(proj: Projection, title: str | None, draw: Callable[[Any], object]) -> Figure:
    """A 6 x 6 in figure with one equal-aspect axes on which ``draw(ax)`` plots, in ``proj``."""
    fig, ax = new_figure((6.0, 6.0))
    draw(ax)
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    finish_figure(fig, ax, title, proj.labels)
    return fig


def draw_panels(
    proj: Projection,
    title: str | None,
    ncols: int | None,
    names: Sequence[str],
    items: Sequence[Any],
    draw: Callable[[Any, Any], list[np.ndarray]],
) -> Figure:
    """One subplot per item, titled by ``names``; ``draw(ax, item)`` plots and returns its points.

    Every subplot gets the same limits (covering all returned points) and, for D >= 2, an equal
    aspect; ``ncols`` is checked here (after the data).
    """
    fig, axes = _new_panel_figure(len(items), ncols)
    drawn: list[np.ndarray] = []
    for ax, item in zip(axes, items):
        drawn += draw(ax, item)
    _finish_panels(fig, axes, names, drawn, proj.labels, title, equal=proj.dim >= 2)
    return fig


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file in the same directory, then os.replace)."""
    dest = Path(path)
    fmt = dest.suffix[1:].lower() if dest.suffix else "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"unsupported image format {fmt!r} for {str(dest)!r}; use one of: {', '.join(sorted(supported))}"
        )
    return write_atomic(dest, lambda fh: fig.savefig(fh, format=fmt, dpi=_DPI))


def write_atomic(dest: Path, write) -> Path:
    """Call ``write(binary_file)`` on a temporary file next to ``dest``, then os.replace it (an OSError,
    a read-only or full disk, is the one-line ValueError of :func:`flowmatch._utils.io.write_error`)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as e:
        raise write_error(dest, e) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, dest)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise write_error(dest, e) from None
        raise
    return dest
