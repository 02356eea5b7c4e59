"""Per-frame operations on ``(B, C, T)`` sequences: a LayerNorm over the channels of each frame
and a linear map of each frame's channels. Neither looks along time, so a valid frame's output
does not depend on how much padding follows it (GroupNorm over time, as in Matcha-TTS's decoder,
would let the padding change the valid frames).

:class:`FrameLinear` is a 1x1 convolution written as a linear layer on ``(B * T, C)`` rows.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ChannelLayerNorm", "FrameLinear"]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of every frame of a ``(B, C, T)`` tensor (learned affine)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.transpose(1, 2), self.normalized_shape, self.weight, self.bias, self.eps).transpose(1, 2)


class FrameLinear(nn.Linear):
    """``(B, C_in, T) -> (B, C_out, T)``: the same linear map of every frame's channels."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)
