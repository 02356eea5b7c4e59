"""Time embeddings for velocity networks: t of shape (B,) -> features of shape (B, k)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int

__all__ = ["IdentityTimeEmbedding", "SinusoidalTimeEmbedding", "make_time_embedding"]


class IdentityTimeEmbedding(nn.Module):
    """t -> [t] (the paper's MLP concatenates t to x)."""

    out_dim = 1

    def forward(self, t: Tensor) -> Tensor:
        return t[:, None]


class SinusoidalTimeEmbedding(nn.Module):
    """t -> [sin(2 pi f_k t), cos(2 pi f_k t)]_k with geometric frequencies f_k in [1, max_freq].

    Vaswani et al. (2017) positional features applied to t in [0, 1]; ``dim`` must be even.
    """

    freqs: Tensor

    def __init__(self, dim: int = 32, max_freq: float = 100.0):
        super().__init__()
        dim = check_positive_int("time embedding dim", dim)
        if dim % 2:
            raise ValueError(f"sinusoidal time embedding dim must be even, got {dim}")
        self.out_dim = dim
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), dim // 2))
        self.register_buffer("freqs", 2 * math.pi * freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        arg = t[:, None] * self.freqs.to(t.dtype)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


def make_time_embedding(kind: str, dim: int = 32) -> IdentityTimeEmbedding | SinusoidalTimeEmbedding:
    """``"concat"`` (raw t) or ``"sinusoidal"`` (``dim`` Fourier features)."""
    if kind == "concat":
        return IdentityTimeEmbedding()
    if kind == "sinusoidal":
        return SinusoidalTimeEmbedding(dim)
    raise ValueError(f"unknown time embedding {kind!r}; choose one of: concat, sinusoidal")
