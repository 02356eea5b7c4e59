"""The checks of a sequence model's call ``model(x, t, cond=None, mask=None)``.

A batch of sequences is ``x`` of shape ``(B, C, T)`` padded with zeros to the longest utterance;
``mask`` is ``(B, 1, T)`` with 1 for a valid frame (:mod:`flowmatch.data.masks`), ``None`` for
"every frame valid"; ``t`` is ``(B,)`` (or a scalar, broadcast) in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.data.masks import check_mask

__all__ = ["check_sequence_call", "coarsen_mask", "check_time_dim_and_dropout"]


def check_time_dim_and_dropout(time_dim: int, dropout: float) -> int:
    """The backbones' shared constructor rules: ``time_dim`` a positive even integer (sin and cos
    pairs) and ``dropout`` in [0, 1); returns ``time_dim``."""
    time_dim = check_positive_int("time_dim", time_dim)
    if time_dim % 2:
        raise ValueError(f"time_dim must be even (sin and cos pairs), got {time_dim}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
    return time_dim


def check_sequence_call(
    name: str, in_channels: int, x: Tensor, t: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``(t, mask)`` of a valid call: t as ``(B,)`` of x's dtype, mask as a ``(B, 1, T)`` float 0/1
    tensor (all ones for ``None``). Raises one-line ValueErrors naming the rule and the value."""
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != in_channels:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expects x of shape (B, {in_channels}, T), got {got}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} expects a floating x, got dtype {x.dtype}")
    b, _, frames = x.shape
    if frames < 1:
        raise ValueError(f"{name} expects at least one frame, got x of shape {tuple(x.shape)}")
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t)
    t = t.to(device=x.device, dtype=x.dtype)
    if t.dim() == 0:
        t = t.expand(b)
    if t.shape != (b,):
        raise ValueError(f"{name} expects t of shape ({b},) (one time per sequence), got {tuple(t.shape)}")
    if mask is None:
        return t, torch.ones(b, 1, frames, dtype=x.dtype, device=x.device)
    if isinstance(mask, Tensor) and mask.dim() == 3 and mask.shape[1] != 1:
        raise ValueError(f"{name} needs a per-frame mask of shape ({b}, 1, {frames}), got {tuple(mask.shape)}")
    m = check_mask(mask, x)
    if m.shape[-1] != frames:
        raise ValueError(f"{name} needs a mask of shape ({b}, 1, {frames}), got {tuple(mask.shape)}")
    return t, m


def coarsen_mask(mask: Tensor) -> Tensor:
    """The mask of a stride-2 downsampling: frame j valid where input frame 2j is, so a length L
    becomes ceil(L / 2) (a last half-window at an odd length is valid: it sees one real frame)."""
    return mask[:, :, ::2]
