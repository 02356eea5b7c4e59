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
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from flowmatch._validate import check_positive_int

__all__ = ["plot_samples", "plot_trajectories", "plot_loss", "plot_loss_csv"]

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
    size = 4.0
    if src is not None:
        s2 = proj(_subsample(src, max_points))
        ax.scatter(s2[:, 0], s2[:, 1], s=size, c=_COLORS["source"], alpha=0.5, lw=0,
                   label=f"source (n={src.shape[0]})")
    t2 = proj(_subsample(tgt, max_points))
    ax.scatter(t2[:, 0], t2[:, 1], s=size, c=_COLORS["target"], alpha=0.6, lw=0,
               label=f"target (n={tgt.shape[0]})")
    g2 = proj(_subsample(gen, max_points))
    ax.scatter(g2[:, 0], g2[:, 1], s=size, c=_COLORS["generated"], alpha=0.6, lw=0,
               label=f"generated (n={gen.shape[0]})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", markerscale=3.0, fontsize="small")
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
    traj = _to_numpy("trajectory", trajectory)
    if traj.ndim < 3 or traj.shape[0] < 2 or traj.shape[1] < 1 or traj.size == 0:
        raise ValueError(
            f"trajectory must have shape (T+1, n, *dims) with T+1 >= 2 and n >= 1, "
            f"got shape {traj.shape}"
        )
    traj = traj[:, :n_show].reshape(traj.shape[0], min(traj.shape[1], n_show), -1)
    _check_finite("trajectory", traj)
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

    steps, n, d = traj.shape
    flat = proj(traj.reshape(steps * n, d)).reshape(steps, n, 2)
    fig, ax = _new_figure((6.0, 6.0))
    if tgt is not None:
        t2 = proj(_subsample(tgt, 5000))
        ax.scatter(t2[:, 0], t2[:, 1], s=3.0, c=_COLORS["target"], alpha=0.25, lw=0,
                   zorder=1, label=f"target (n={tgt.shape[0]})")
    segments = np.transpose(flat, (1, 0, 2))  # (n, T+1, 2)
    ax.add_collection(LineCollection(list(segments), colors="#6a3d9a", alpha=0.15,
                                     linewidths=0.6, zorder=2))
    ax.scatter(flat[0, :, 0], flat[0, :, 1], s=4.0, c="black", lw=0, zorder=3,
               label="start (t=0)")
    ax.scatter(flat[-1, :, 0], flat[-1, :, 1], s=4.0, c=_COLORS["generated"], lw=0,
               zorder=4, label="end (t=1)")
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", markerscale=3.0, fontsize="small")
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
    try:
        s = float(smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}") from None
    if not (0.0 <= s < 1.0):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
    x = _to_numpy("steps", steps)
    y = _to_numpy("losses", losses)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"steps and losses must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"steps and losses must have the same length, got {x.shape[0]} and {y.shape[0]}"
        )
    if x.shape[0] == 0:
        raise ValueError("losses must hold at least 1 value, got 0")
    _check_finite("steps", x)
    _check_finite("losses", y)

    fig, ax = _new_figure((7.0, 4.0))
    ax.plot(x, y, lw=0.6, alpha=0.35, color="#1f77b4", label="loss")
    ax.plot(x, _ema(y, s), lw=1.6, color="#d62728", label=f"EMA ({s:g})")
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
