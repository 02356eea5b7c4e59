"""Training-loss figures: one run (or a CSV log) with its moving average, or several runs."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from flowmatch.plots._common import (
    check_finite_points,
    check_panels,
    finish_figure,
    new_figure,
    panel_entry,
    save_figure,
    to_numpy,
)

__all__ = ["plot_loss", "plot_loss_csv", "plot_loss_curves"]


def _check_smoothing(smoothing: Any) -> float:
    try:
        s = float(smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}") from None
    if not (0.0 <= s < 1.0):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
    return s


def _loss_arrays(steps_name: str, losses_name: str, steps: Any, losses: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a loss curve: two finite 1-D arrays of the same length >= 1."""
    x = to_numpy(steps_name, steps)
    y = to_numpy(losses_name, losses)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"{steps_name} and {losses_name} must be 1-D, got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{steps_name} and {losses_name} must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError(f"{losses_name} must hold at least 1 value, got 0")
    check_finite_points(steps_name, x)
    check_finite_points(losses_name, y)
    return x, y


def _ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Bias-corrected exponential moving average: m_k = s m_{k-1} + (1-s) v_k, m_k / (1 - s^k)."""
    from scipy.signal import lfilter

    m = lfilter([1.0 - smoothing], [1.0, -smoothing], values)
    k = np.arange(1, values.shape[0] + 1, dtype=np.float64)
    return m / (1.0 - smoothing**k)


def _draw_loss(
    ax: Any,
    x: np.ndarray,
    y: np.ndarray,
    s: float,
    *,
    raw_color: str,
    ema_color: str,
    raw_label: str | None,
    ema_label: str,
) -> None:
    """Raw loss (thin, transparent) and its bias-corrected EMA on ``ax``."""
    ax.plot(x, y, lw=0.6, alpha=0.35 if raw_color != ema_color else 0.2, color=raw_color, label=raw_label)
    ax.plot(x, _ema(y, s), lw=1.6, color=ema_color, label=ema_label)


def _loss_figure(
    runs: Sequence[tuple[np.ndarray, np.ndarray, dict[str, Any]]],
    smoothing: float,
    title: str | None,
    legend: Mapping[str, Any] | None = None,
) -> Figure:
    """Step/loss axes with each ``(steps, losses, style)`` run drawn by :func:`_draw_loss`.

    The y-axis is logarithmic when every loss of every run is > 0 (linear otherwise); ``legend``
    holds extra keyword arguments of the legend.
    """
    fig, ax = new_figure((7.0, 4.0))
    for x, y, style in runs:
        _draw_loss(ax, x, y, smoothing, **style)
    if all(bool((y > 0).all()) for _, y, _ in runs):
        ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small", **(legend or {}))
    finish_figure(fig, ax, title, ("step", "loss"))
    return fig


def plot_loss(
    steps: Any, losses: Any, path: str | os.PathLike[str], *, title: str | None = None, smoothing: float = 0.98
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
    style = dict(raw_color="#1f77b4", ema_color="#d62728", raw_label="loss", ema_label=f"EMA ({s:g})")
    return save_figure(_loss_figure([(x, y, style)], s, title), path)


def plot_loss_csv(
    csv_path: str | os.PathLike[str], path: str | os.PathLike[str], *, title: str | None = None, smoothing: float = 0.98
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
            raise ValueError(f"{str(src)!r} must have a header with 'step' and 'loss' columns, got {fields}")
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


def _curve_colors(n: int) -> list[str]:
    """``n`` distinct colours: tab10, tab20, then evenly spaced samples of a perceptual map."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 20:  # the qualitative maps: an integer picks the i-th of their listed colours
        listed = colormaps["tab10" if n <= 10 else "tab20"]
        return [to_hex(listed(i)) for i in range(n)]
    cmap = colormaps["turbo"]
    return [to_hex(cmap(v)) for v in np.linspace(0.05, 0.95, n)]


def _build_loss_curves(
    curves: Mapping[str, tuple[Any, Any]], *, title: str | None = None, smoothing: float = 0.9
) -> Figure:
    """The figure of :func:`plot_loss_curves` (validated, drawn, not written)."""
    s = _check_smoothing(smoothing)
    entries = check_panels("curves", curves)
    data = []
    for key, value in entries:
        name = panel_entry("curves", key)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            got = f"length {len(value)}" if isinstance(value, Sequence) else type(value).__name__
            raise ValueError(f"{name} must be a (steps, losses) pair, got {got}")
        data.append(_loss_arrays(f"{name} steps", f"{name} losses", value[0], value[1]))

    runs = [
        (x, y, dict(raw_color=color, ema_color=color, raw_label=None, ema_label=key))
        for (key, _), (x, y), color in zip(entries, data, _curve_colors(len(entries)))
    ]
    legend = {"title": f"EMA ({s:g}); faint: raw", "title_fontsize": "small"}
    return _loss_figure(runs, s, title, legend)


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
    return save_figure(fig, path)
