"""UNet1D: a Matcha-TTS-style decoder ``v_theta(x, t, c)`` for padded ``(B, C, T)`` sequences.

Follows the decoder of Matcha-TTS (Mehta et al., ICASSP 2024), itself the 1D U-Net of Grad-TTS
with transformer blocks:

- input: ``concat(x, encoded condition)`` per frame (Matcha concatenates the aligned text
  encoding ``mu`` and the speaker vector; here :class:`SequenceConditionEncoder`);
- time: sinusoidal features -> MLP, added in every residual block;
- ``len(channels)`` levels down, each a residual 1D-conv block and ``attention_blocks``
  transformer blocks (key-padding masked self-attention), a stride-2 convolution between levels;
  ``mid_blocks`` (residual + transformer) at the coarsest level; the levels up mirror them with
  skip connections (concatenated) and stride-2 transposed convolutions; a last conv block and a
  1x1 projection to C channels, multiplied by the mask.

Unlike Matcha, every step is padding-invariant: the norms are per-frame LayerNorms over channels
(Matcha's GroupNorm over time would let the padding change the valid frames), every convolution
sees zeros at padded frames (the hidden state is multiplied by the mask before it), and a length
that is not a multiple of ``2 ** (levels - 1)`` is zero-padded internally and cropped back, the
mask coarsened with each downsampling (frame j valid where 2j is: odd lengths round up).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmatch._utils.validate import check_nonnegative_int, check_positive_int
from flowmatch.data.seqcond import SequenceCondition
from flowmatch.models.embeddings import SinusoidalTimeEmbedding
from flowmatch.models.sequence.condition import SequenceConditionEncoder
from flowmatch.models.sequence.frames import ChannelLayerNorm, FrameLinear
from flowmatch.models.sequence.inputs import check_sequence_call, check_time_dim_and_dropout, coarsen_mask
from flowmatch.models.sequence.transformer_block import TransformerBlock

__all__ = ["UNet1D"]


class _ConvBlock(nn.Module):
    """``mask * Mish(LN(Conv(x * mask)))`` (Matcha's Block1D with a per-frame norm)."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = ChannelLayerNorm(c_out)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return F.mish(self.norm(self.conv(x * mask))) * mask


class _ResBlock(nn.Module):
    """``block2(block1(x) + W e) + skip(x)`` with the time embedding e (Matcha's ResnetBlock1D)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, kernel: int, dropout: float):
        super().__init__()
        self.block1 = _ConvBlock(c_in, c_out, kernel)
        self.emb = nn.Sequential(nn.Mish(), nn.Linear(emb_dim, c_out))
        self.drop = nn.Dropout(dropout)
        self.block2 = _ConvBlock(c_out, c_out, kernel)
        self.skip = FrameLinear(c_in, c_out)

    def forward(self, x: Tensor, mask: Tensor, emb: Tensor) -> Tensor:
        h = self.block1(x, mask) + self.emb(emb)[:, :, None]
        h = self.block2(self.drop(h), mask)
        return h + self.skip(x * mask)


class _Stage(nn.Module):
    """A residual block then transformer blocks, at one resolution."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, kernel: int, blocks: int, heads: int, dropout: float):
        super().__init__()
        self.res = _ResBlock(c_in, c_out, emb_dim, kernel, dropout)
        self.attn = nn.ModuleList([TransformerBlock(c_out, heads, dropout=dropout) for _ in range(blocks)])

    def forward(self, x: Tensor, mask: Tensor, emb: Tensor) -> Tensor:
        h = self.res(x, mask, emb)
        if len(self.attn):
            valid = mask[:, 0] > 0
            s = h.transpose(1, 2)
            for block in self.attn:
                s = block(s, valid)
            h = s.transpose(1, 2)
        return h * mask


class UNet1D(nn.Module):
    """Matcha-TTS-style 1D U-Net velocity field, called as ``model(x, t, cond=None, mask=None)``.

    Args:
        in_channels: channels C of the sequences (80 for log-mels); the output has C channels.
        channels: width of each level (``len(channels) - 1`` stride-2 downsamplings).
        attention_blocks: transformer blocks per level (and per mid block); 0 for a pure conv net.
        mid_blocks: residual + transformer blocks at the coarsest level.
        heads: attention heads (each width must be a multiple).
        kernel: kernel size (odd) of the residual blocks' convolutions.
        time_dim: sinusoidal features of t (even); the embedding has ``4 * channels[0]`` entries.
        dropout: dropout in the residual and transformer blocks.
        num_tokens: token vocabulary of the condition (0: no tokens).
        num_speakers: speakers of the condition (0: none).
        feature_dim: frame-aligned condition features F (0: none).
        context_channels: channels of an infilling context (0: none).
        cond_dim: embedding size of the condition; all five as in
            :class:`~flowmatch.models.sequence.condition.SequenceConditionEncoder`.

    Example:
        >>> import torch
        >>> net = UNet1D(8, channels=(16, 16), num_speakers=3)
        >>> x, mask = torch.zeros(2, 8, 11), torch.ones(2, 1, 11)
        >>> net(x, torch.rand(2), SequenceCondition(speaker=torch.tensor([0, -1])), mask).shape
        torch.Size([2, 8, 11])
    """

    def __init__(
        self,
        in_channels: int = 80,
        *,
        channels: Sequence[int] = (64, 96, 128),
        attention_blocks: int = 1,
        mid_blocks: int = 1,
        heads: int = 4,
        kernel: int = 3,
        time_dim: int = 64,
        dropout: float = 0.0,
        num_tokens: int = 0,
        num_speakers: int = 0,
        feature_dim: int = 0,
        context_channels: int = 0,
        cond_dim: int = 64,
    ):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        try:
            widths = tuple(check_positive_int("channels entry", c) for c in channels)
        except TypeError:
            raise ValueError(f"channels must be a sequence of positive integers, got {channels!r}") from None
        if not widths:
            raise ValueError(f"channels must hold at least one level, got {channels!r}")
        attention_blocks = check_nonnegative_int("attention_blocks", attention_blocks)
        mid_blocks = check_nonnegative_int("mid_blocks", mid_blocks)
        heads = check_positive_int("heads", heads)
        bad = [c for c in widths if c % heads]
        if attention_blocks and bad:
            raise ValueError(f"every entry of channels must be a multiple of heads ({heads}), got {bad[0]}")
        kernel = check_positive_int("kernel", kernel)
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (a centred convolution), got {kernel}")
        time_dim = check_time_dim_and_dropout(time_dim, dropout)
        self.cond_encoder = SequenceConditionEncoder(
            num_tokens, num_speakers, feature_dim, context_channels, dim=cond_dim
        )
        self.levels = len(widths)
        self.config = dict(
            in_channels=in_channels,
            channels=list(widths),
            attention_blocks=attention_blocks,
            mid_blocks=mid_blocks,
            heads=heads,
            kernel=kernel,
            time_dim=time_dim,
            dropout=float(dropout),
            num_tokens=num_tokens,
            num_speakers=num_speakers,
            feature_dim=feature_dim,
            context_channels=context_channels,
            cond_dim=cond_dim,
        )
        emb_dim = 4 * widths[0]
        self.time_features = SinusoidalTimeEmbedding(time_dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def stage(c_in: int, c_out: int) -> _Stage:
            return _Stage(c_in, c_out, emb_dim, kernel, attention_blocks, heads, dropout)

        c = in_channels + self.cond_encoder.out_dim
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, w in enumerate(widths):
            self.down.append(stage(c, w))
            c = w
            if i < self.levels - 1:
                self.downsample.append(nn.Conv1d(w, w, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([stage(c, c) for _ in range(mid_blocks)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(self.levels)):
            self.up.append(stage(c + widths[i], widths[i]))
            c = widths[i]
            if i > 0:
                self.upsample.append(nn.ConvTranspose1d(c, widths[i - 1], 4, stride=2, padding=1))
                c = widths[i - 1]
        self.final = _ConvBlock(c, c, kernel)
        self.out = FrameLinear(c, in_channels)

    def forward(
        self, x: Tensor, t: Tensor, cond: SequenceCondition | None = None, mask: Tensor | None = None
    ) -> Tensor:
        t, mask = check_sequence_call("UNet1D", self.in_channels, x, t, mask)
        frames = x.shape[-1]
        emb = self.time_mlp(self.time_features(t))
        h = torch.cat([x, self.cond_encoder(cond, x, mask)], dim=1) * mask
        extra = (-frames) % 2 ** (self.levels - 1)
        m = F.pad(mask, (0, extra)) if extra else mask
        h = F.pad(h, (0, extra)) if extra else h
        masks, skips = [m], []
        for i, level in enumerate(self.down):
            h = level(h, masks[-1], emb)
            skips.append(h)
            if i < self.levels - 1:
                h = self.downsample[i](h * masks[-1])
                masks.append(coarsen_mask(masks[-1]))
        for block in self.mid:
            h = block(h, masks[-1], emb)
        for j, level in enumerate(self.up):
            m = masks.pop()
            h = level(torch.cat([h, skips.pop()], dim=1), m, emb)
            if j < self.levels - 1:
                h = self.upsample[j](h * m)
        h = self.out(self.final(h, m) * m) * m
        return h[:, :, :frames]
