"""UNet velocity field v_theta(x, t, c) for images of shape (B, C, H, W).

The architecture follows the DDPM / improved-DDPM UNet (Ho et al. 2020; Nichol & Dhariwal 2021)
as used for flow matching on images (Lipman et al. ICLR 2023; Tong et al. TMLR 2024, CIFAR-10):

- t -> sinusoidal features -> 2-layer MLP -> time embedding ``e_t`` of ``4 * base_channels``;
  a class (or vector) condition is embedded to the same size and *added*: ``e = e_t + e_c``, with a
  learned null condition for classifier-free guidance (:class:`~flowmatch.models.cond.CondEmbedding`);
- an encoder of ``len(channel_mults)`` levels, each ``num_res_blocks`` residual blocks
  ``h + Conv(SiLU(GN(Conv(SiLU(GN(h))) + W e)))`` (GroupNorm, SiLU, dropout), halving the
  resolution between levels; a middle block (res, attention, res); a decoder that mirrors the
  encoder with skip connections; GroupNorm, SiLU and a 3x3 convolution back to C channels;
- self-attention (single head over the H*W positions) after the residual blocks of every level
  whose resolution is in ``attention_resolutions``.

Inputs whose size is not divisible by ``2 ** (levels - 1)`` (e.g. 28x28 with three downsamplings)
are padded by reflection and the output cropped back, so the output always has the input's shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.models.cond import CondEmbedding
from flowmatch.models.embeddings import SinusoidalTimeEmbedding

__all__ = ["UNet"]


def _groups(channels: int) -> int:
    """The largest of 32, 16, 8, 4, 2, 1 that divides ``channels`` and leaves >= 4 per group."""
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over spatial positions, residual."""

    def __init__(self, channels: int, fused: bool = True):
        super().__init__()
        self.fused = fused
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        if self.fused:
            a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (b, hw, c)
        else:  # the same attention in plain ops, which forward-mode AD (torch.func.jvp) differentiates
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c), dim=-1) @ v
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class _Level(nn.Module):
    def __init__(self, blocks: Sequence[_ResBlock], attn: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attn)


class UNet(nn.Module):
    """UNet velocity field for images, called as ``model(x, t, cond=None)``.

    Args:
        in_channels: image channels C (the output has C channels too).
        base_channels: channels of the first level; level i has ``base_channels * channel_mults[i]``.
        channel_mults: one multiplier per resolution level (``len - 1`` downsamplings).
        num_res_blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_resolutions: side lengths (in pixels, of the padded input) of the levels that get
            self-attention, e.g. ``(4,)`` for the 4x4 level of 8x8 images, or ``(16,)`` for 32x32.
            The middle block always has attention unless ``mid_attention=False``.
        image_size: the input side length used to place ``attention_resolutions`` (a square image,
            or the larger side); inputs of other sizes are accepted, attention stays at the levels
            chosen for ``image_size``.
        num_classes: K > 0 for class-conditional models (labels in ``[0, K)``, -1 or ``None``:
            the learned null class).
        cond_shape: shape of a floating condition (vector or feature tensor), projected to the
            embedding size; ``None`` for none.
        dropout: dropout in the residual blocks.
        mid_attention: self-attention in the middle block.
        interval: an average-velocity network u(x, t, h) (MeanFlow, shortcut models): the interval
            length h gets its own sinusoidal embedding and MLP, added to the time embedding
            (``model(x, t, cond=None, h=None)``, ``h=None`` is h = 0); attention then runs in plain
            ops, which ``torch.func.jvp`` differentiates (the fused kernel has no forward-mode rule).

    Example:
        >>> import torch
        >>> net = UNet(1, base_channels=16, channel_mults=(1, 2), num_classes=10, image_size=8)
        >>> net(torch.zeros(3, 1, 8, 8), torch.rand(3), torch.tensor([0, 5, -1])).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (),
        image_size: int = 32,
        num_classes: int = 0,
        cond_shape: Sequence[int] | int | None = None,
        dropout: float = 0.0,
        mid_attention: bool = True,
        interval: bool = False,
    ):
        super().__init__()
        in_channels = check_positive_int("in_channels", in_channels)
        base_channels = check_positive_int("base_channels", base_channels)
        num_res_blocks = check_positive_int("num_res_blocks", num_res_blocks)
        image_size = check_positive_int("image_size", image_size)
        try:
            mults = tuple(check_positive_int("channel_mults entry", int(m)) for m in channel_mults)
            attn_res = tuple(check_positive_int("attention_resolutions entry", int(r)) for r in attention_resolutions)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"channel_mults and attention_resolutions must be sequences of positive integers: {e}"
            ) from None
        if not mults:
            raise ValueError(f"channel_mults must hold at least one level, got {channel_mults!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.in_channels = in_channels
        self.levels = len(mults)
        self.num_classes = num_classes
        self.config = dict(
            in_channels=in_channels,
            base_channels=base_channels,
            channel_mults=list(mults),
            num_res_blocks=num_res_blocks,
            attention_resolutions=list(attn_res),
            image_size=image_size,
            num_classes=num_classes,
            cond_shape=None
            if cond_shape is None
            else list((cond_shape,) if isinstance(cond_shape, int) else cond_shape),
            dropout=float(dropout),
            mid_attention=bool(mid_attention),
            interval=bool(interval),
        )
        fused = not interval  # SDPA has no forward-mode derivative; MeanFlow's target takes a JVP

        emb_dim = 4 * base_channels
        self.time_features = SinusoidalTimeEmbedding(base_channels if base_channels % 2 == 0 else base_channels + 1)
        self.time_mlp = nn.Sequential(
            nn.Linear(self.time_features.out_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        if num_classes or cond_shape is not None:
            self.cond_embed: CondEmbedding | None = CondEmbedding(num_classes, cond_shape, emb_dim, project=True)
        else:
            self.cond_embed = None

        pad = 2 ** (self.levels - 1)
        size = -(-image_size // pad) * pad
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        chans = [base_channels * m for m in mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [base_channels]
        c = base_channels
        for i, ch in enumerate(chans):
            res = size // 2**i
            blocks, attn = [], []
            for _ in range(num_res_blocks):
                blocks.append(_ResBlock(c, ch, emb_dim, dropout))
                attn.append(_Attention(ch, fused) if res in attn_res else nn.Identity())
                c = ch
                skips.append(c)
            self.down.append(_Level(blocks, attn))
            if i < self.levels - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1 = _ResBlock(c, c, emb_dim, dropout)
        self.mid_attn = _Attention(c, fused) if mid_attention else nn.Identity()
        self.mid2 = _ResBlock(c, c, emb_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(self.levels)):
            ch = chans[i]
            res = size // 2**i
            blocks, attn = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(_ResBlock(c + skips.pop(), ch, emb_dim, dropout))
                attn.append(_Attention(ch, fused) if res in attn_res else nn.Identity())
                c = ch
            self.up.append(_Level(blocks, attn))
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, in_channels, 3, padding=1)
        self.interval_mlp: nn.Sequential | None = None
        if interval:  # built last: a plain UNet's initial weights do not depend on this flag
            self.interval_mlp = nn.Sequential(
                nn.Linear(self.time_features.out_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
            )

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, h: Tensor | None = None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        b, _, height, width = x.shape
        t = t.to(x.dtype)
        if t.dim() == 0:
            t = t.expand(b)
        emb = self.time_mlp(self.time_features(t))
        if self.interval_mlp is not None:
            step = torch.zeros_like(t) if h is None else h.to(x.dtype).expand(b)
            emb = emb + self.interval_mlp(self.time_features(step))
        elif h is not None:
            raise ValueError("this UNet is a velocity field (interval=False); got an interval h")
        if self.cond_embed is not None:
            emb = emb + self.cond_embed(cond, b)
        m = 2 ** (self.levels - 1)
        ph, pw = (-height) % m, (-width) % m
        if ph or pw:
            mode = "reflect" if ph < height and pw < width else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)

        hs = [self.stem(x)]
        hcur = hs[-1]
        for i, level in enumerate(cast(Iterable[_Level], self.down)):
            for block, attn in zip(level.blocks, level.attn):
                hcur = attn(block(hcur, emb))
                hs.append(hcur)
            if i < self.levels - 1:
                hcur = self.downsample[i](hcur)
                hs.append(hcur)
        hcur = self.mid2(self.mid_attn(self.mid1(hcur, emb)), emb)
        for j, level in enumerate(cast(Iterable[_Level], self.up)):
            for block, attn in zip(level.blocks, level.attn):
                hcur = attn(block(torch.cat([hcur, hs.pop()], dim=1), emb))
            if j < self.levels - 1:
                hcur = self.upsample[j](F.interpolate(hcur, scale_factor=2.0, mode="nearest"))
        out = self.out(F.silu(self.out_norm(hcur)))
        return out[:, :, :height, :width]
