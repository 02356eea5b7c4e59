"""Mel spectrograms as pictures: generated beside the reference, one panel per row, frequency up."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flowmatch.plots._common import save_figure

__all__ = ["plot_spectrograms"]


def _as_array(mel) -> np.ndarray:
    a = mel.detach().to("cpu", torch.float32).numpy() if isinstance(mel, torch.Tensor) else np.asarray(mel, np.float32)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"a mel spectrogram must have shape (n_mels, T), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("a mel spectrogram must be finite, got NaN or Inf values")
    return a


def plot_spectrograms(
    mels: Sequence,
    titles: Sequence[str],
    path: str | Path,
    *,
    hop_seconds: float | None = 256 / 22050,
    suptitle: str = "",
) -> Path:
    """Stack the ``(n_mels, T)`` spectrograms (log-mel) vertically on one colour scale and save a PNG.

    ``titles`` names each panel (e.g. "generated, 4 Euler steps", "reference"); the time axis is
    in seconds when ``hop_seconds`` is given, else in frames.
    """
    from matplotlib.figure import Figure

    arrays = [_as_array(m) for m in mels]
    if len(arrays) != len(titles) or not arrays:
        raise ValueError(f"give one title per spectrogram, got {len(arrays)} spectrograms and {len(titles)} titles")
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    longest = max(a.shape[1] for a in arrays)
    fig = Figure(figsize=(max(6.0, 2.5 + longest / 40), 2.2 * len(arrays)), layout="constrained")
    axes = fig.subplots(len(arrays), 1, squeeze=False)
    for ax, a, title in zip(axes[:, 0], arrays, titles):
        extent = None
        if hop_seconds is not None:
            extent = (0.0, a.shape[1] * hop_seconds, 0, a.shape[0])
        im = ax.imshow(a, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma", extent=extent)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel bin")
        ax.set_xlim(0, longest * hop_seconds if hop_seconds is not None else longest)
    axes[-1, 0].set_xlabel("time (s)" if hop_seconds is not None else "frame")
    fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.01, label="log mel")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save_figure(fig, path)
