"""Mono 16-bit PCM WAV files with the standard library's :mod:`wave`.

A float waveform is written as ``round(clip(y, -1, 1) * 32767)``; int16 is written as it is, so
writing and reading int16 is exact. Writes are atomic: a temporary file in the same directory,
``fsync``, then ``os.replace``; on an OSError the target is left as it was and the one-line
ValueError of :func:`flowmatch._utils.io.write_error` is raised.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import torch

from flowmatch._utils.io import atomic_write
from flowmatch._utils.validate import check_positive_int

__all__ = ["to_int16", "write_wav", "read_wav"]


def to_int16(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(N,)`` int16 samples: int16 unchanged, float ``round(clip(y, -1, 1) * 32767)``."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"audio must be a 1-D mono waveform, got shape {a.shape}")
    if a.dtype == np.int16:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"audio must be int16 or float, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError("audio must be finite, got NaN or Inf")
    return np.round(np.clip(a, -1.0, 1.0) * 32767.0).astype(np.int16)


def write_wav(path: str | os.PathLike[str], audio: np.ndarray | torch.Tensor, sample_rate: int = 22050) -> Path:
    """Write ``audio`` as a mono int16 WAV file at ``sample_rate`` Hz, atomically; returns the path."""
    sample_rate = check_positive_int("sample_rate", sample_rate)
    samples = to_int16(audio)

    def write(f) -> None:
        with wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(samples.astype("<i2").tobytes())

    return atomic_write(path, write)


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """``(int16 samples (N,), sample rate)`` of a mono 16-bit PCM WAV file."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ValueError(
                    f"{str(path)!r} must be mono 16-bit PCM, got {w.getnchannels()} channels of "
                    f"{8 * w.getsampwidth()} bits"
                )
            rate = w.getframerate()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{str(path)!r} is not a readable WAV file: {e}") from None
    return np.frombuffer(data, dtype="<i2").astype(np.int16), rate
