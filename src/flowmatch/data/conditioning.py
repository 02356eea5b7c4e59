"""Conditions and the null condition: what ``cond`` may be, and how a dropped condition is written.

A condition travels with every target sample, from the data through the coupling (reordered with
x1), the matcher and the model to the sampler. Its first dimension is the batch; it is one of

- a **class label**: an integer tensor of shape ``(B,)`` with values in ``[0, num_classes)``;
- a **vector** or any **tensor of features**: a floating tensor of shape ``(B, *cond_shape)``
  (e.g. ``(B, k)``, or ``(B, L, F)`` for a sequence of features);
- a :class:`~flowmatch.data.seqcond.SequenceCondition`: the frame-aligned tokens, features,
  speaker and infilling context of a batch of sequences, each field with its own null value.

Classifier-free guidance (Ho & Salimans 2022) trains one network both conditionally and
unconditionally by replacing the condition of a random fraction p of the training pairs with a
*null condition*, for which the model substitutes a learned embedding. The null condition is
written in the tensor itself, so it passes unchanged through couplings, chunked solvers and
concatenations:

- labels: the value :data:`NULL_LABEL` (-1);
- floating conditions: a row that is NaN in every entry.

``cond=None`` passed to a conditional model means "null for every row" (the unconditional field).
Data are checked to be finite, so a NaN row never arises from real data.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_probability
from flowmatch.data.seqcond import SequenceCondition

__all__ = [
    "NULL_LABEL",
    "Condition",
    "is_label",
    "null_like",
    "null_mask",
    "drop_condition",
    "check_cond",
    "cat_conditions",
]

#: What ``cond`` may be (besides None).
Condition = Tensor | SequenceCondition

#: The label value that stands for "no condition" (the learned null embedding).
NULL_LABEL = -1


def is_label(cond: Condition) -> bool:
    """Whether ``cond`` is a class label tensor (integer dtype, shape ``(B,)``)."""
    if isinstance(cond, SequenceCondition):
        return False
    return not torch.is_floating_point(cond) and not torch.is_complex(cond) and cond.dtype != torch.bool


def check_cond(cond: object, batch: int) -> Condition:
    """Validate a condition for a batch of ``batch`` samples; returns it unchanged.

    Labels must have shape ``(B,)``; floating conditions shape ``(B, *cond_shape)``; a
    :class:`SequenceCondition` one row per sample (its fields are checked when it is built).
    """
    if isinstance(cond, SequenceCondition):
        if cond.batch_size != batch:
            raise ValueError(f"cond must have one row per sample ({batch}), got {cond.batch_size} rows")
        return cond
    if not isinstance(cond, Tensor):
        raise TypeError(f"cond must be a torch.Tensor or None, got {type(cond).__name__}")
    if cond.dim() < 1 or cond.shape[0] != batch:
        raise ValueError(
            f"cond must have one row per sample (leading dimension {batch}), got shape {tuple(cond.shape)}"
        )
    if cond.dtype == torch.bool or torch.is_complex(cond):
        raise TypeError(f"cond must be an integer label or a real floating tensor, got dtype {cond.dtype}")
    if is_label(cond) and cond.dim() != 1:
        raise ValueError(f"class labels must have shape (B,), got {tuple(cond.shape)}")
    return cond


def null_mask(cond: Condition) -> Tensor:
    """``(B,)`` bool: which rows hold the null condition (label -1, or a row that is all NaN)."""
    if isinstance(cond, SequenceCondition):
        return cond.null_mask()
    if is_label(cond):
        return cond == NULL_LABEL
    flat = cond.reshape(cond.shape[0], -1)
    return torch.isnan(flat).all(dim=1)


def null_like(cond: Condition) -> Condition:
    """The null condition with the shape, dtype and device of ``cond``."""
    if isinstance(cond, SequenceCondition):
        return cond.null_like()
    if is_label(cond):
        return torch.full_like(cond, NULL_LABEL)
    return torch.full_like(cond, float("nan"))


def drop_condition(cond: Condition, p: float, *, generator: torch.Generator | None = None) -> Condition:
    """Condition dropout for classifier-free guidance (Ho & Salimans 2022, Algorithm 1).

    Each row is replaced by the null condition independently with probability ``p``:
    ``keep_i = (u_i >= p)`` with ``u_i ~ U[0, 1)`` drawn from ``generator`` (one draw per row,
    also when ``p`` is 0 or 1, so the random stream does not depend on ``p``).

    Args:
        cond: ``(B,)`` labels, ``(B, *cond_shape)`` floating conditions or a SequenceCondition
            (a dropped row is null in every field: text, speaker and context together, as Voicebox
            drops them).
        p: the dropout probability in [0, 1].
        generator: the source of the draws (its device must be ``cond``'s).

    Returns:
        A new tensor: ``cond`` with the dropped rows set to :func:`null_like`.
    """
    p = check_probability("condition dropout probability", p)
    u = torch.rand(cond.shape[0], device=cond.device, generator=generator)
    drop = u < p
    if isinstance(cond, SequenceCondition):
        return cond.where_null(drop)
    shape = (cond.shape[0],) + (1,) * (cond.dim() - 1)
    null = torch.full_like(cond, NULL_LABEL) if is_label(cond) else torch.full_like(cond, float("nan"))
    return torch.where(drop.reshape(shape), null, cond)


def cat_conditions(conds: list[Condition]) -> Condition:
    """The rows of several conditions of one kind, one after another (``torch.cat`` for tensors)."""
    if all(isinstance(c, SequenceCondition) for c in conds):
        return SequenceCondition.cat(conds)  # type: ignore[arg-type]
    if all(isinstance(c, Tensor) for c in conds):
        return torch.cat(conds)  # type: ignore[arg-type]
    raise TypeError(f"conditions of different kinds cannot be joined: {[type(c).__name__ for c in conds]}")
