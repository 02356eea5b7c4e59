"""Multi-head self-attention over the frames of a padded batch, with a key-padding mask and
optional rotary positions (RoPE, Su et al. 2021, as lucidrains' Voicebox uses instead of the
paper's ALiBi): padded frames are never attended to, so a valid frame's output does not depend on
the padding; padded queries attend to the valid frames (their outputs are masked downstream).

Up to rounding: the softmax and the weighted sum reduce over the padded number of keys, and
vectorised kernels group the (zero-weight) padded keys with the valid ones differently for
different lengths, so the same utterance padded to two lengths agrees to ~1e-7 relative, not
always bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int

__all__ = ["RotaryEmbedding", "MaskedSelfAttention"]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding of ``head_dim`` (even) channels: ``(cos, sin)`` of shape
    ``(T, head_dim)`` for positions 0..T-1; frequencies ``theta ** (-2i / head_dim)``."""

    inv_freq: Tensor

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        head_dim = check_positive_int("rotary head_dim", head_dim)
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head dimension, got {head_dim}")
        self.register_buffer(
            "inv_freq", theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim), persistent=False
        )

    def forward(self, frames: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        pos = torch.arange(frames, device=device, dtype=torch.float32)
        ang = pos[:, None] * self.inv_freq.to(device)[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the channel pairs ``(i, i + d/2)`` of ``x`` ``(..., T, d)`` by the position angles."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class MaskedSelfAttention(nn.Module):
    """Self-attention of ``(B, T, dim)`` frames; ``valid`` ``(B, T)`` bool marks the keys to attend.

    Args:
        dim: model width (a multiple of ``heads``).
        heads: attention heads.
        rotary: rotate queries and keys by their frame position (needs an even head dimension).
        dropout: attention dropout (training only).
    """

    def __init__(self, dim: int, heads: int = 4, *, rotary: bool = False, dropout: float = 0.0):
        super().__init__()
        dim = check_positive_int("attention dim", dim)
        heads = check_positive_int("attention heads", heads)
        if dim % heads:
            raise ValueError(f"the attention width must be a multiple of heads ({heads}), got {dim}")
        self.heads = heads
        self.dropout = float(dropout)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.rotary = RotaryEmbedding(dim // heads) if rotary else None

    def forward(self, h: Tensor, valid: Tensor) -> Tensor:
        b, frames, dim = h.shape
        q, k, v = self.qkv(h).reshape(b, frames, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.rotary is not None:
            cos, sin = self.rotary(frames, h.device, h.dtype)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=valid[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(a.transpose(1, 2).reshape(b, frames, dim))
