"""Log-mel spectrograms as Matcha-TTS (Mehta et al. ICASSP 2024) and HiFi-GAN compute them.

At 22050 Hz, with ``n_fft = win = 1024``, ``hop = 256``, 80 mel bins on [0, 8000] Hz:

    y_pad = reflect_pad(y, (n_fft - hop) / 2 on each side)       (384 samples)
    X[k, f] = sum_n w[n] y_pad[f hop + n] exp(-2 pi i k n / n_fft)  (Hann w, center=False)
    S[k, f] = sqrt(Re X^2 + Im X^2 + 1e-9)                        (magnitude, not power)
    mel[m, f] = log(max(sum_k M[m, k] S[k, f], 1e-5))

with ``M = librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)`` (Slaney's mel scale and area
normalisation, librosa's default). A waveform of N >= hop samples has ``N // hop`` frames, and
frame f covers the input samples [f hop - 384, f hop + 640): its centre is sample
``f hop + hop / 2`` (:func:`frame_centres`), which is where the corpus reads the phoneme that
sounds in the frame. The filter bank is computed once per process (:func:`mel_filters`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP",
    "WIN",
    "N_MELS",
    "FMIN",
    "FMAX",
    "LOG_FLOOR",
    "mel_filters",
    "linear_magnitude",
    "log_mel",
    "n_frames",
    "frame_centres",
]

SAMPLE_RATE = 22050
N_FFT = 1024
WIN = 1024
HOP = 256
N_MELS = 80
FMIN = 0.0
FMAX = 8000.0
#: the floor of the log: log(max(mel, 1e-5)) >= log(1e-5) = -11.5129
LOG_FLOOR = 1e-5


@functools.lru_cache(maxsize=8)
def cached_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``librosa.filters.mel`` for these settings, float32, read-only (librosa imported lazily)."""
    try:
        import librosa
    except ImportError:
        raise ImportError("log-mel features need librosa: pip install flowmatch[speech]") from None
    m = np.asarray(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax), dtype=np.float32)
    m.setflags(write=False)
    return m


def mel_filters() -> Tensor:
    """The ``(80, 513)`` Slaney mel filter bank (a fresh float32 tensor on the cached array)."""
    return torch.tensor(cached_filters(SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX))


def as_waveform(audio: np.ndarray | Tensor) -> Tensor:
    """A ``(N,)`` float32 waveform in [-1, 1]: int16 is divided by 32768."""
    if isinstance(audio, np.ndarray):
        if audio.dtype == np.int16:
            audio = audio.astype(np.float32) / np.float32(32768.0)
        audio = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if not isinstance(audio, Tensor) or audio.dim() != 1:
        got = tuple(audio.shape) if hasattr(audio, "shape") else type(audio).__name__
        raise ValueError(f"audio must be a 1-D waveform, got shape {got}")
    if audio.numel() < HOP:
        raise ValueError(f"audio must hold at least one hop of {HOP} samples, got {audio.numel()}")
    return audio.to(torch.float32)


def linear_magnitude(audio: np.ndarray | Tensor) -> Tensor:
    """``(513, N // 256)`` magnitude STFT ``S`` of the waveform, as in the module docstring."""
    y = as_waveform(audio)
    pad = (N_FFT - HOP) // 2
    y = torch.nn.functional.pad(y[None, None], (pad, pad), mode="reflect")[0, 0]
    window = torch.hann_window(WIN, dtype=torch.float32)
    spec = torch.stft(y, N_FFT, hop_length=HOP, win_length=WIN, window=window, center=False, return_complex=True)
    spec = torch.view_as_real(spec)
    return torch.sqrt(spec.pow(2).sum(-1) + 1e-9)


def log_mel(audio: np.ndarray | Tensor) -> Tensor:
    """``(80, N // 256)`` float32 log-mel spectrogram of a 22050 Hz waveform (int16 or float)."""
    return torch.log(torch.clamp(mel_filters() @ linear_magnitude(audio), min=LOG_FLOOR))


def n_frames(n_samples: int) -> int:
    """Frames of a waveform of ``n_samples`` (>= hop): ``1 + (n + 2*384 - 1024) // 256 = n // 256``."""
    return 1 + (n_samples + (N_FFT - HOP) - N_FFT) // HOP


def frame_centres(n: int) -> np.ndarray:
    """``(n,)`` int64 sample index of the centre of frames 0..n-1: ``f * 256 + 128``."""
    return np.arange(n, dtype=np.int64) * HOP + HOP // 2
