"""Checks of the samplers' inputs, shared by the ODE and SDE samplers: the time span, the initial
states, the mask of padded sequences, and whether a condition is split with the rows."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_finite
from flowmatch.data.masks import check_mask
from flowmatch.data.seqcond import SequenceCondition

__all__ = ["check_t_span", "check_x0", "check_sample_mask", "splits_with_rows"]


def check_t_span(t_span: Any) -> tuple[float, float]:
    try:
        if isinstance(t_span, (str, bytes)) or len(t_span) != 2:
            raise TypeError
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise ValueError(f"t_span must be a pair of two finite numbers, got {t_span!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"t_span must be a pair of two finite numbers, got {t_span!r}")
    if t0 == t1:
        raise ValueError(f"t_span must hold two distinct times, got {t_span!r}")
    return t0, t1


def check_x0(x0: Any) -> Tensor:
    if not isinstance(x0, Tensor):
        raise ValueError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    if not torch.is_floating_point(x0):
        raise ValueError(f"x0 must be a floating-point tensor, got dtype {x0.dtype}")
    if x0.dim() < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape (n, *dims) with n >= 1, got {tuple(x0.shape)}")
    check_finite("x0", x0)
    return x0


def check_sample_mask(mask: Any, x0: Tensor) -> Tensor:
    """The mask of padded initial states (1 = valid element), as a 0/1 tensor of x0's dtype."""
    return check_mask(mask, x0)


def splits_with_rows(cond: Any, n: int) -> bool:
    """Whether ``cond`` has one row per sample (a tensor or a SequenceCondition of n rows), so that
    chunking the samples chunks it too."""
    if isinstance(cond, SequenceCondition):
        return cond.batch_size == n
    return isinstance(cond, Tensor) and cond.dim() >= 1 and cond.shape[0] == n
