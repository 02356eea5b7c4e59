"""Condition encoders and the conditional MLP.

:class:`CondEmbedding` turns a condition (see :mod:`flowmatch.data.conditioning`) into a feature vector
per sample, with a learned null condition for classifier-free guidance (Ho & Salimans 2022):

- class labels ``(B,)``: an embedding table of ``num_classes + 1`` rows, the last one the null
  embedding (used for label -1 and for ``cond=None``);
- floating conditions ``(B, *cond_shape)``: flattened to ``(B, prod(cond_shape))`` and either
  concatenated as they are (``project=False``) or mapped by a linear layer (``project=True``); a
  null row (all NaN) and ``cond=None`` take a learned null vector of the output size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.data.conditioning import NULL_LABEL, is_label, null_mask
from flowmatch.models.mlp import MLP

__all__ = ["CondEmbedding", "ConditionalMLP"]


def _check_cond_shape(cond_shape: Sequence[int] | int | None) -> tuple[int, ...] | None:
    if cond_shape is None:
        return None
    # a bool is no shape: it falls through to the loop below, which rejects it (not iterable)
    dims: Any = (cond_shape,) if isinstance(cond_shape, int) and not isinstance(cond_shape, bool) else cond_shape
    try:
        shape = tuple(check_positive_int("cond_shape entry", int(s)) for s in dims)
    except (TypeError, ValueError):
        raise ValueError(f"cond_shape must be a tuple of positive integers, got {cond_shape!r}") from None
    if not shape:
        raise ValueError(f"cond_shape must hold at least one dimension, got {cond_shape!r}")
    return shape


class CondEmbedding(nn.Module):
    """Condition -> features ``(B, out_dim)``, with a learned null condition.

    Args:
        num_classes: number of classes K of label conditions (labels in ``[0, K)``); 0 for a
            floating condition.
        cond_shape: shape of one floating condition (``(k,)`` for a vector); ``None`` for labels.
        dim: the embedding size of labels, and of projected floating conditions.
        project: floating conditions only: map them linearly to ``dim`` features (True) or pass
            them on flattened for concatenation (False, ``out_dim = prod(cond_shape)``).

    Called as ``emb(cond, batch)`` with ``cond`` the condition or ``None`` (null for all rows).
    """

    def __init__(
        self,
        num_classes: int = 0,
        cond_shape: Sequence[int] | int | None = None,
        dim: int = 32,
        *,
        project: bool = True,
    ):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        shape = _check_cond_shape(cond_shape)
        if (num_classes > 0) == (shape is not None):
            raise ValueError(
                "give exactly one of num_classes > 0 (labels) or cond_shape (floating conditions), "
                f"got num_classes={num_classes!r}, cond_shape={cond_shape!r}"
            )
        dim = check_positive_int("condition embedding dim", dim)
        self.num_classes = num_classes
        self.cond_shape = shape
        if num_classes > 0:
            self.out_dim = dim
            self.table: nn.Embedding | None = nn.Embedding(num_classes + 1, dim)  # row num_classes: the null label
            self.proj: nn.Linear | None = None
            self.null: nn.Parameter | None = None
        else:
            if shape is None:  # pragma: no cover - exactly one of the two was checked above
                raise ValueError("a floating condition needs cond_shape")
            flat = math.prod(shape)
            self.table = None
            self.proj = nn.Linear(flat, dim) if project else None
            self.out_dim = dim if project else flat
            self.null = nn.Parameter(torch.randn(self.out_dim) * 0.1)

    def forward(self, cond: Tensor | None, batch: int) -> Tensor:
        if self.table is not None:
            return self.table(self.label_index(cond, batch))
        if self.null is None:  # unreachable: __init__ sets a table or a null vector
            raise RuntimeError("CondEmbedding has neither a label table nor a null vector")
        if cond is None:
            return self.null.expand(batch, -1)
        if is_label(cond):
            raise TypeError(
                f"this embedding expects floating conditions of shape (B, *{self.cond_shape}), "
                f"got integer labels of dtype {cond.dtype}"
            )
        if cond.shape[0] != batch or tuple(cond.shape[1:]) != self.cond_shape:
            raise ValueError(f"cond must have shape ({batch}, *{self.cond_shape}), got {tuple(cond.shape)}")
        null = null_mask(cond)
        flat = cond.reshape(batch, -1).to(self.null.dtype)
        flat = torch.where(null[:, None], torch.zeros_like(flat), flat)  # no NaN reaches a gradient
        h = self.proj(flat) if self.proj is not None else flat
        return torch.where(null[:, None], self.null.expand(batch, -1), h)

    def label_index(self, cond: Tensor | None, batch: int) -> Tensor:
        """Row of the embedding table per sample: the label, or ``num_classes`` for the null."""
        if self.table is None:
            raise RuntimeError("label_index needs an embedding of labels (num_classes > 0)")
        device = self.table.weight.device
        if cond is None:
            return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if not is_label(cond):
            raise TypeError(f"this embedding expects integer class labels (B,), got dtype {cond.dtype}")
        if cond.shape != (batch,):
            raise ValueError(f"class labels must have shape ({batch},), got {tuple(cond.shape)}")
        bad = (cond < NULL_LABEL) | (cond >= self.num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"class labels must lie in [0, {self.num_classes}) (or be {NULL_LABEL} for the null "
                f"condition), got {int(cond[bad][0])}"
            )
        cond = cond.long()
        return torch.where(cond == NULL_LABEL, torch.full_like(cond, self.num_classes), cond)


class ConditionalMLP(nn.Module):
    """v_theta(x, t, c) = MLP([x, emb(t), e(c)]) with e a :class:`CondEmbedding`.

    Labels enter through a learned embedding of ``cond_embed_dim`` features; vectors and feature
    tensors are flattened and concatenated (``project=False``), so the network is the
    :class:`~flowmatch.models.MLP` of Tong et al. with the condition appended to its input. Both
    learn a null condition for classifier-free guidance (used for ``cond=None`` and for null rows).

    Args:
        dim: data dimension D.
        num_classes: K for label conditions (0 for floating conditions).
        cond_shape: shape of one floating condition (``None`` for labels).
        cond_embed_dim: embedding size of labels.
        **mlp_kwargs: ``hidden``, ``depth``, ``activation``, ``time_embedding``, ``time_dim``.

    Example:
        >>> import torch
        >>> m = ConditionalMLP(2, num_classes=3)
        >>> m(torch.zeros(4, 2), torch.rand(4), torch.tensor([0, 1, 2, -1])).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        dim: int,
        *,
        num_classes: int = 0,
        cond_shape: Sequence[int] | int | None = None,
        cond_embed_dim: int = 32,
        **mlp_kwargs,
    ):
        super().__init__()
        self.cond_embed = CondEmbedding(num_classes, cond_shape, cond_embed_dim, project=False)
        self.mlp = MLP(dim, cond_dim=self.cond_embed.out_dim, **mlp_kwargs)
        self.dim = self.mlp.dim
        self.num_classes = num_classes

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.mlp(x, t, self.cond_embed(cond, x.shape[0]))
