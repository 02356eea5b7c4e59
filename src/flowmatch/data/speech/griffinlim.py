"""From a log-mel spectrogram back to a waveform, for listening: no vocoder, only signal processing.

1. Linear magnitude by least squares: ``S = max(M^+ exp(mel), 0)``, ``M^+`` the Moore-Penrose
   pseudo-inverse of the ``(80, 513)`` filter bank (librosa's ``mel_to_stft`` solves the same
   problem with non-negative least squares; the pseudo-inverse is its closed-form relaxation).
2. Phase by Griffin-Lim (Griffin & Lim 1984) with the momentum of Perraudin et al. 2013 ("A fast
   Griffin-Lim algorithm"), as ``torchaudio.functional.griffinlim`` does: from random phases
   ``P_0`` (seeded), for i = 1..n_iter,

       x_i = ISTFT(S * P_{i-1}),   R_i = STFT(x_i),
       P_i = (R_i - a / (1 + a) R_{i-1}) / |R_i - a / (1 + a) R_{i-1}|,   a = momentum (0.99).

The STFT here is centred (``torch.stft(center=True)``: frame f centred on sample f hop) whereas
:mod:`flowmatch.data.speech.mel` centres frame f on sample ``f hop + hop / 2``, so the result is
delayed by ``hop / 2`` samples to line up with the frames it came from and has ``T hop`` samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_nonnegative_int, check_positive_int
from flowmatch.data.speech.mel import HOP, N_FFT, N_MELS, WIN, mel_filters

__all__ = ["mel_to_linear", "griffin_lim", "mel_to_audio"]


def check_mel(mel: Tensor) -> Tensor:
    """``mel`` as a finite float32 ``(80, T)`` tensor with T >= 1."""
    mel = torch.as_tensor(mel)
    if mel.dim() != 2 or mel.shape[0] != N_MELS or mel.shape[1] < 1:
        raise ValueError(f"a log-mel spectrogram must have shape ({N_MELS}, T) with T >= 1, got {tuple(mel.shape)}")
    mel = mel.to(torch.float32)
    if not torch.isfinite(mel).all():
        raise ValueError("a log-mel spectrogram must be finite, got NaN or Inf")
    return mel


def mel_to_linear(mel: Tensor) -> Tensor:
    """``(513, T)`` magnitude ``max(M^+ exp(mel), 0)`` of a ``(80, T)`` log-mel."""
    mel = check_mel(mel)
    pinv = torch.linalg.pinv(mel_filters().to(torch.float64))
    return torch.clamp(pinv @ torch.exp(mel.to(torch.float64)), min=0.0).to(torch.float32)


def griffin_lim(magnitude: Tensor, *, n_iter: int = 64, momentum: float = 0.99, seed: int = 0) -> Tensor:
    """Waveform ``(T hop,)`` float32 whose STFT magnitude approximates ``magnitude`` ``(513, T)``."""
    n_iter = check_positive_int("n_iter", n_iter)
    seed = check_nonnegative_int("seed", seed)
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    mag = torch.as_tensor(magnitude, dtype=torch.float32)
    if mag.dim() != 2 or mag.shape[0] != N_FFT // 2 + 1:
        raise ValueError(f"magnitude must have shape ({N_FFT // 2 + 1}, T), got {tuple(mag.shape)}")
    n = mag.shape[1]
    window = torch.hann_window(WIN, dtype=torch.float32)
    length = (n - 1) * HOP

    def stft(x: Tensor) -> Tensor:
        return torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN, window=window, center=True, return_complex=True)

    def istft(spec: Tensor) -> Tensor:
        return torch.istft(spec, N_FFT, hop_length=HOP, win_length=WIN, window=window, center=True, length=length)

    gen = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * torch.pi * torch.rand(mag.shape, generator=gen, dtype=torch.float32))
    if n == 1:  # a single frame: ISTFT of length 0; return one hop of the inverse DFT's centre
        frame = torch.fft.irfft(mag.to(torch.complex64) * angles, n=N_FFT, dim=0)[:, 0]
        return frame[N_FFT // 2 - HOP // 2 : N_FFT // 2 + HOP // 2].contiguous()
    coef = float(momentum) / (1.0 + float(momentum))
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = stft(istft(mag * angles))
        angles = rebuilt - coef * previous
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    audio = istft(mag * angles)
    return torch.cat([torch.zeros(HOP // 2), audio, torch.zeros(HOP // 2)])


def mel_to_audio(mel: Tensor, *, n_iter: int = 64, momentum: float = 0.99, seed: int = 0) -> Tensor:
    """``(T hop,)`` float32 waveform of a ``(80, T)`` log-mel: :func:`mel_to_linear` then
    :func:`griffin_lim`, peak-limited to [-1, 1]."""
    audio = griffin_lim(mel_to_linear(mel), n_iter=n_iter, momentum=momentum, seed=seed)
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    return audio / peak if peak > 1.0 else audio
