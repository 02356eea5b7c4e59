"""Masks of variable-length sequences: which elements of a padded batch are real.

A batch of sequences is ``x`` of shape ``(B, C, T)``, the utterances padded with zeros to the
longest one; its ``mask`` has shape ``(B, 1, T)`` (one entry per frame, broadcast over the
channels) or the shape of ``x`` (one per element), with 1 (True) for a valid element and 0 for
padding. Every loss averages over the valid elements only,

    L = sum_i m_i l_i / sum_i m_i,

so that a frame of a short utterance weighs as much as a frame of a long one (Matcha-TTS's
decoder loss), padded elements get zero gradient, and samplers keep them at zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["lengths_to_mask", "check_mask", "masked_mean", "mask_lengths"]


def lengths_to_mask(lengths: Tensor, max_length: int | None = None, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(B, 1, T)`` mask with ones in the first ``lengths[b]`` frames of row b (T = max_length,
    default the longest length)."""
    if not isinstance(lengths, Tensor) or lengths.dim() != 1 or torch.is_floating_point(lengths):
        got = tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
        raise ValueError(f"lengths must be an integer tensor of shape (B,), got {got}")
    if lengths.numel() and int(lengths.min()) < 1:
        raise ValueError(f"every length must be >= 1, got a length of {int(lengths.min())}")
    longest = int(lengths.max()) if lengths.numel() else 0
    T = longest if max_length is None else int(max_length)
    if T < longest:
        raise ValueError(f"max_length must be at least the longest length {longest}, got {T}")
    frames = torch.arange(T, device=lengths.device)
    return (frames[None, :] < lengths[:, None]).to(dtype).unsqueeze(1)


def mask_lengths(mask: Tensor) -> Tensor:
    """``(B,)`` number of valid frames of each row of a ``(B, 1, T)`` mask."""
    return (mask.reshape(mask.shape[0], -1, mask.shape[-1])[:, 0] > 0).sum(dim=-1)


def check_mask(mask: object, x: Tensor, *, name: str = "mask") -> Tensor:
    """Validate ``mask`` for the batch ``x``; returns it as a floating tensor of ``x``'s dtype and
    device (0 or 1), of shape ``(B, 1, *rest)`` or ``x``'s shape.

    Rules: a tensor of 0/1 (or bool) values, one row per sample, the same number of dimensions as
    ``x``, each trailing dimension equal to x's or 1 (broadcast), and at least one valid element
    in every row (a row of padding only has no loss to average).
    """
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.dim() != x.dim() or mask.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must have shape (B, 1, T) or x's shape {tuple(x.shape)} (1 = valid element), got {tuple(mask.shape)}"
        )
    for k in range(1, x.dim()):
        if mask.shape[k] not in (1, x.shape[k]):
            raise ValueError(
                f"{name} must broadcast over x {tuple(x.shape)}: dimension {k} must be 1 or {x.shape[k]}, "
                f"got {tuple(mask.shape)}"
            )
    m = mask.to(device=x.device, dtype=x.dtype if torch.is_floating_point(x) else torch.float32)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1 (1 = valid element)")
    if bool((m.reshape(m.shape[0], -1).sum(dim=1) == 0).any()):
        raise ValueError(f"every row of {name} must have at least one valid element, got a row of padding only")
    return m


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """``sum(mask * values) / sum(mask broadcast to values)``; the plain mean when mask is None.

    The count is of valid *elements* (a per-frame mask counts each valid frame once per channel),
    so the result is the mean over the valid elements exactly, and the same to the last bit for
    the same valid values padded to any length.
    """
    if mask is None:
        return values.mean()
    valid = (mask > 0).expand_as(values)
    # the valid elements gathered in row-major order (the same sequence however long the padding,
    # so the sum is bit-identical for any padding), never multiplied: a non-finite value in the
    # padding neither leaks into the loss nor into its gradient
    picked = values.masked_select(valid)
    return picked.sum() / picked.numel()
