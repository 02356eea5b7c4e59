"""Figures for flow-matching runs: samples, trajectories and training loss.

Figures are drawn with :class:`matplotlib.figure.Figure` and the Agg canvas
(:class:`matplotlib.backends.backend_agg.FigureCanvasAgg`) directly, never through
``matplotlib.pyplot``: no global figure state is created and a user's interactive backend is left
untouched (this module does not call ``matplotlib.use``). Each function writes its file
atomically (a temporary file in the destination directory, then ``os.replace``), creates missing
parent directories, and returns the destination path. The image format follows the file suffix
(``.png`` when there is none).

Samples of shape ``(n, *dims)`` are flattened to ``(n, D)``. For ``D = 2`` the two coordinates are
plotted; for ``D > 2`` every point set is projected onto the top two principal components of the
reference set (the target when given), and the axis labels say so; for ``D = 1`` the values are
plotted on a line at height 0.

Comparison figures (:func:`plot_sample_panels`, :func:`plot_trajectory_panels`) draw one subplot
per method with the same projection and identical axis limits in every subplot, so the panels can
be compared by eye; :func:`plot_loss_curves` overlays several training curves on one axis.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from flowmatch._validate import check_positive_int

__all__ = [
    "plot_samples",
    "plot_trajectories",
    "plot_loss",
    "plot_loss_csv",
    "plot_sample_panels",
    "plot_trajectory_panels",
    "plot_loss_curves",
]

_DPI = 120
_COLORS = {"source": "#9a9a9a", "target": "#1f77b4", "generated": "#d62728"}


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _to_numpy(name: str, x: Any) -> np.ndarray:
    """Return ``x`` (tensor, ndarray, list) as a float64 ndarray."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a tensor or array of numbers, got {type(x).__name__}"
        ) from None


def _check_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must be finite, got {int(bad.sum())} NaN/Inf value(s) (first at index {first})"
        )


def _points(name: str, x: Any) -> np.ndarray:
    """Validate samples ``(n, *dims)`` (or ``(n,)``) and flatten them to ``(n, D)``, n >= 1."""
    arr = _to_numpy(name, x)
    if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{name} must hold at least 1 sample, got shape {arr.shape}")
    arr = arr.reshape(arr.shape[0], -1)
    _check_finite(name, arr)
    return arr


def _same_dim(ref_name: str, ref: np.ndarray, name: str, arr: np.ndarray) -> None:
    if arr.shape[1] != ref.shape[1]:
        raise ValueError(
            f"{name} and {ref_name} must have the same feature dimension, "
            f"got {arr.shape[1]} and {ref.shape[1]}"
        )


def _subsample(arr: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` evenly spaced rows (deterministic; keeps the order)."""
    if arr.shape[0] <= max_points:
        return arr
    idx = np.unique(np.linspace(0, arr.shape[0] - 1, max_points).round().astype(np.int64))
    return arr[idx]


class _Projection:
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


def _check_smoothing(smoothing: Any) -> float:
    try:
        s = float(smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}") from None
    if not (0.0 <= s < 1.0):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
    return s


def _trajectory_array(name: str, trajectory: Any, n_show: int) -> np.ndarray:
    """Validate ``(T+1, n, *dims)`` and return the first ``n_show`` paths as ``(T+1, n', D)``."""
    traj = _to_numpy(name, trajectory)
    if traj.ndim < 3 or traj.shape[0] < 2 or traj.shape[1] < 1 or traj.size == 0:
        raise ValueError(
            f"{name} must have shape (T+1, n, *dims) with T+1 >= 2 and n >= 1, "
            f"got shape {traj.shape}"
        )
    traj = traj[:, :n_show].reshape(traj.shape[0], min(traj.shape[1], n_show), -1)
    _check_finite(name, traj)
    return traj


def _loss_arrays(steps_name: str, losses_name: str, steps: Any, losses: Any
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Validate a loss curve: two finite 1-D arrays of the same length >= 1."""
    x = _to_numpy(steps_name, steps)
    y = _to_numpy(losses_name, losses)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(
            f"{steps_name} and {losses_name} must be 1-D, got shapes {x.shape} and {y.shape}"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{steps_name} and {losses_name} must have the same length, "
            f"got {x.shape[0]} and {y.shape[0]}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{losses_name} must hold at least 1 value, got 0")
    _check_finite(steps_name, x)
    _check_finite(losses_name, y)
    return x, y


def _check_panels(name: str, panels: Any) -> list[tuple[str, Any]]:
    """A non-empty mapping ``name -> value`` as a list of ``(str(key), value)`` pairs."""
    if not isinstance(panels, Mapping):
        raise TypeError(f"{name} must be a mapping of name -> data, got {type(panels).__name__}")
    if len(panels) == 0:
        raise ValueError(f"{name} must hold at least 1 entry, got 0")
    return [(str(k), v) for k, v in panels.items()]


def _entry(name: str, key: str) -> str:
    return f"{name}[{key!r}]"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _new_figure(figsize: tuple[float, float]) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` atomically (temp file in the same directory, then os.replace)."""
    dest = Path(path)
    fmt = dest.suffix[1:].lower() if dest.suffix else "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"unsupported image format {fmt!r} for {str(dest)!r}; use one of: "
            f"{', '.join(sorted(supported))}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=_DPI)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest


def _finish(fig: Figure, ax: Any, title: str | None, labels: Sequence[str]) -> None:
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if title is not None:
        ax.set_title(str(title))
    fig.tight_layout()


# --------------------------------------------------------------------------------------------
# Drawing on a given Axes
# --------------------------------------------------------------------------------------------


def _draw_samples(
    ax: Any,
    proj: _Projection,
    generated: np.ndarray,
    target: np.ndarray,
    source: np.ndarray | None,
    max_points: int,
) -> list[np.ndarray]:
    """Scatter source (if any), target and generated ``(n, D)`` sets on ``ax``, with a legend.

    Returns the drawn 2-D points of every set (for computing shared axis limits).
    """
    size = 4.0
    drawn = []
    if source is not None:
        s2 = proj(_subsample(source, max_points))
        ax.scatter(s2[:, 0], s2[:, 1], s=size, c=_COLORS["source"], alpha=0.5, lw=0,
                   label=f"source (n={source.shape[0]})")
        drawn.append(s2)
    t2 = proj(_subsample(target, max_points))
    ax.scatter(t2[:, 0], t2[:, 1], s=size, c=_COLORS["target"], alpha=0.6, lw=0,
               label=f"target (n={target.shape[0]})")
    g2 = proj(_subsample(generated, max_points))
    ax.scatter(g2[:, 0], g2[:, 1], s=size, c=_COLORS["generated"], alpha=0.6, lw=0,
               label=f"generated (n={generated.shape[0]})")
    drawn += [t2, g2]
    ax.legend(loc="upper right", markerscale=3.0, fontsize="small")
    return drawn


def _draw_trajectories(
    ax: Any,
    proj: _Projection,
    traj: np.ndarray,
    target: np.ndarray | None,
) -> list[np.ndarray]:
    """Draw ``(T+1, n, D)`` paths (and the target underneath, if any) on ``ax``, with a legend.

    Returns the drawn 2-D points (for computing shared axis limits).
    """
    steps, n, d = traj.shape
    flat = proj(traj.reshape(steps * n, d)).reshape(steps, n, 2)
    drawn = [flat.reshape(steps * n, 2)]
    if target is not None:
        t2 = proj(_subsample(target, 5000))
        ax.scatter(t2[:, 0], t2[:, 1], s=3.0, c=_COLORS["target"], alpha=0.25, lw=0,
                   zorder=1, label=f"target (n={target.shape[0]})")
        drawn.append(t2)
    segments = np.transpose(flat, (1, 0, 2))  # (n, T+1, 2)
    ax.add_collection(LineCollection(list(segments), colors="#6a3d9a", alpha=0.15,
                                     linewidths=0.6, zorder=2))
    ax.scatter(flat[0, :, 0], flat[0, :, 1], s=4.0, c="black", lw=0, zorder=3,
               label="start (t=0)")
    ax.scatter(flat[-1, :, 0], flat[-1, :, 1], s=4.0, c=_COLORS["generated"], lw=0,
               zorder=4, label="end (t=1)")
    ax.legend(loc="upper right", markerscale=3.0, fontsize="small")
    return drawn


def _draw_loss(ax: Any, x: np.ndarray, y: np.ndarray, s: float, *, raw_color: str,
               ema_color: str, raw_label: str | None, ema_label: str) -> None:
    """Raw loss (thin, transparent) and its bias-corrected EMA on ``ax``."""
    ax.plot(x, y, lw=0.6, alpha=0.35 if raw_color != ema_color else 0.2, color=raw_color,
            label=raw_label)
    ax.plot(x, _ema(y, s), lw=1.6, color=ema_color, label=ema_label)


def _shared_limits(points: Sequence[np.ndarray], margin: float = 0.05
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


def _panel_figure(n: int, ncols: int | None, panel_size: float = 4.0) -> tuple[Figure, list[Any]]:
    """A figure with exactly ``n`` subplots on a grid, all sharing x and y with the first."""
    nrows, cols = _grid(n, ncols)
    fig = Figure(figsize=(panel_size * cols, panel_size * nrows + 0.3), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes: list[Any] = []
    for i in range(n):
        first = axes[0] if axes else None
        axes.append(fig.add_subplot(nrows, cols, i + 1, sharex=first, sharey=first))
    return fig, axes


def _finish_panels(fig: Figure, axes: Sequence[Any], names: Sequence[str],
                   points: Sequence[np.ndarray], labels: Sequence[str], title: str | None,
                   equal: bool) -> None:
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


# --------------------------------------------------------------------------------------------
# Public plots
# --------------------------------------------------------------------------------------------


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
    tgt = _points("target", target)
    gen = _points("generated", generated)
    _same_dim("target", tgt, "generated", gen)
    src = None
    if source is not None:
        src = _points("source", source)
        _same_dim("target", tgt, "source", src)
    proj = _Projection(tgt, "target")

    fig, ax = _new_figure((6.0, 6.0))
    _draw_samples(ax, proj, gen, tgt, src, max_points)
    ax.set_aspect("equal", adjustable="datalim")
    _finish(fig, ax, title, proj.labels)
    return _save(fig, path)


def plot_trajectories(
    trajectory: Any,
    path: str | os.PathLike[str],
    *,
    target: Any = None,
    n_show: int = 500,
    title: str | None = None,
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
    traj = _trajectory_array("trajectory", trajectory, n_show)
    tgt = None
    if target is not None:
        tgt = _points("target", target)
        if tgt.shape[1] != traj.shape[2]:
            raise ValueError(
                f"target and trajectory must have the same feature dimension, "
                f"got {tgt.shape[1]} and {traj.shape[2]}"
            )
        proj = _Projection(tgt, "target")
    else:
        proj = _Projection(traj[-1], "end points")

    steps, n, _ = traj.shape
    fig, ax = _new_figure((6.0, 6.0))
    _draw_trajectories(ax, proj, traj, tgt)
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    _finish(fig, ax, title if title is not None else f"{n} trajectories, {steps - 1} steps",
            proj.labels)
    return _save(fig, path)


def _ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Bias-corrected exponential moving average: m_k = s m_{k-1} + (1-s) v_k, m_k / (1 - s^k)."""
    from scipy.signal import lfilter

    m = lfilter([1.0 - smoothing], [1.0, -smoothing], values)
    k = np.arange(1, values.shape[0] + 1, dtype=np.float64)
    return m / (1.0 - smoothing**k)


def plot_loss(
    steps: Any,
    losses: Any,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    smoothing: float = 0.98,
) -> Path:
    """Training loss against step: raw values (thin, transparent) and their moving average.

    The average is the bias-corrected EMA ``m_k = s m_{k-1} + (1 - s) loss_k``, shown as
    ``m_k / (1 - s^k)``, with ``s = smoothing``. The y-axis is logarithmic when every loss is
    > 0 (linear otherwise).

    Args:
        steps: ``(N,)`` step numbers.
        losses: ``(N,)`` loss values, finite.
        path: destination file.
        title: optional title.
        smoothing: EMA factor in [0, 1).

    Raises:
        ValueError: empty, non-1-D or non-finite input, or ``steps``/``losses`` of different
            lengths.
    """
    s = _check_smoothing(smoothing)
    x, y = _loss_arrays("steps", "losses", steps, losses)

    fig, ax = _new_figure((7.0, 4.0))
    _draw_loss(ax, x, y, s, raw_color="#1f77b4", ema_color="#d62728", raw_label="loss",
               ema_label=f"EMA ({s:g})")
    if bool((y > 0).all()):
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    _finish(fig, ax, title, ("step", "loss"))
    return _save(fig, path)


def plot_loss_csv(
    csv_path: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    smoothing: float = 0.98,
) -> Path:
    """Read a training log (CSV with a header holding ``step`` and ``loss``) and plot the loss.

    Other columns are ignored; rows whose ``loss`` cell is empty are skipped (e.g. rows that only
    log validation metrics). Rows with a non-finite step or loss (``nan``, ``inf``: a diverged
    run) are left out of the plot and their count is added to the title, so a diverged run can
    still be inspected.

    Raises:
        ValueError: missing columns, no finite loss rows, or a cell that is not a number.
        FileNotFoundError: ``csv_path`` does not exist.
    """
    src = Path(csv_path)
    steps: list[float] = []
    losses: list[float] = []
    with src.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        if "step" not in fields or "loss" not in fields:
            raise ValueError(
                f"{str(src)!r} must have a header with 'step' and 'loss' columns, got {fields}"
            )
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): v for k, v in row.items()}
            cell = (row.get("loss") or "").strip()
            if cell == "":
                continue
            try:
                steps.append(float((row.get("step") or "").strip()))
                losses.append(float(cell))
            except ValueError:
                raise ValueError(
                    f"{str(src)!r} line {line}: step and loss must be numbers, "
                    f"got step={row.get('step')!r}, loss={cell!r}"
                ) from None
    x, y = np.asarray(steps, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    dropped = int((~keep).sum())
    if not keep.any():
        raise ValueError(f"{str(src)!r} holds no finite loss values ({dropped} non-finite)")
    if dropped:
        note = f"{dropped} non-finite loss value(s) omitted"
        title = note if title is None else f"{title} ({note})"
    return plot_loss(x[keep], y[keep], path, title=title, smoothing=smoothing)


# --------------------------------------------------------------------------------------------
# Comparison figures
# --------------------------------------------------------------------------------------------


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
    entries = _check_panels("panels", panels)
    tgt = _points("target", target)
    gens = []
    for key, value in entries:
        gen = _points(_entry("panels", key), value)
        _same_dim("target", tgt, _entry("panels", key), gen)
        gens.append(gen)
    src = None
    if source is not None:
        src = _points("source", source)
        _same_dim("target", tgt, "source", src)
    proj = _Projection(tgt, "target")

    fig, axes = _panel_figure(len(entries), ncols)
    drawn: list[np.ndarray] = []
    for ax, gen in zip(axes, gens):
        drawn += _draw_samples(ax, proj, gen, tgt, src, max_points)
    _finish_panels(fig, axes, [k for k, _ in entries], drawn, proj.labels, title,
                   equal=tgt.shape[1] >= 2)
    return fig


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
    fig = _build_sample_panels(panels, target, source=source, title=title,
                               max_points=max_points, ncols=ncols)
    return _save(fig, path)


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
    entries = _check_panels("panels", panels)
    trajs = [_trajectory_array(_entry("panels", k), v, n_show) for k, v in entries]
    ref_name, ref_dim = _entry("panels", entries[0][0]), trajs[0].shape[2]
    tgt = None
    if target is not None:
        tgt = _points("target", target)
        ref_name, ref_dim = "target", tgt.shape[1]
    for (key, _), traj in zip(entries, trajs):
        if traj.shape[2] != ref_dim:
            raise ValueError(
                f"{_entry('panels', key)} and {ref_name} must have the same feature dimension, "
                f"got {traj.shape[2]} and {ref_dim}"
            )
    if tgt is not None:
        proj = _Projection(tgt, "target")
    else:
        proj = _Projection(np.concatenate([t[-1] for t in trajs], axis=0), "end points")

    fig, axes = _panel_figure(len(entries), ncols)
    drawn: list[np.ndarray] = []
    for ax, traj in zip(axes, trajs):
        drawn += _draw_trajectories(ax, proj, traj, tgt)
    _finish_panels(fig, axes, [k for k, _ in entries], drawn, proj.labels, title,
                   equal=ref_dim >= 2)
    return fig


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
    fig = _build_trajectory_panels(panels, target=target, n_show=n_show, title=title,
                                   ncols=ncols)
    return _save(fig, path)


def _curve_colors(n: int) -> list[str]:
    """``n`` distinct colours: tab10, tab20, then evenly spaced samples of a perceptual map."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 10:
        return [to_hex(c) for c in colormaps["tab10"].colors[:n]]
    if n <= 20:
        return [to_hex(c) for c in colormaps["tab20"].colors[:n]]
    cmap = colormaps["turbo"]
    return [to_hex(cmap(v)) for v in np.linspace(0.05, 0.95, n)]


def _build_loss_curves(
    curves: Mapping[str, tuple[Any, Any]],
    *,
    title: str | None = None,
    smoothing: float = 0.9,
) -> Figure:
    """The figure of :func:`plot_loss_curves` (validated, drawn, not written)."""
    s = _check_smoothing(smoothing)
    entries = _check_panels("curves", curves)
    data = []
    for key, value in entries:
        name = _entry("curves", key)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            got = f"length {len(value)}" if isinstance(value, Sequence) else type(value).__name__
            raise ValueError(f"{name} must be a (steps, losses) pair, got {got}")
        data.append(_loss_arrays(f"{name} steps", f"{name} losses", value[0], value[1]))

    fig, ax = _new_figure((7.0, 4.0))
    for (key, _), (x, y), color in zip(entries, data, _curve_colors(len(entries))):
        _draw_loss(ax, x, y, s, raw_color=color, ema_color=color, raw_label=None,
                   ema_label=key)
    if all(bool((y > 0).all()) for _, y in data):
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small", title=f"EMA ({s:g}); faint: raw",
              title_fontsize="small")
    _finish(fig, ax, title, ("step", "loss"))
    return fig


def plot_loss_curves(
    curves: Mapping[str, tuple[Any, Any]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    smoothing: float = 0.9,
) -> Path:
    """Compare training runs: one loss curve per entry on a shared axis.

    Each entry is drawn in its own colour as the bias-corrected EMA
    ``m_k = s m_{k-1} + (1 - s) loss_k``, shown as ``m_k / (1 - s^k)`` with ``s = smoothing``,
    over its raw values in the same colour (faint). The y-axis is logarithmic when every loss of
    every entry is > 0 (linear otherwise).

    Args:
        curves: ``name -> (steps, losses)``, each two ``(N,)`` arrays (N may differ between
            entries); the names label the legend, in the mapping's order.
        path: destination file.
        title: optional title.
        smoothing: EMA factor in [0, 1).

    Returns:
        The destination path.

    Raises:
        ValueError: an empty mapping, an entry that is not a ``(steps, losses)`` pair, empty,
            non-1-D or non-finite arrays, or steps/losses of different lengths.
        TypeError: ``curves`` is not a mapping.
    """
    fig = _build_loss_curves(curves, title=title, smoothing=smoothing)
    return _save(fig, path)
