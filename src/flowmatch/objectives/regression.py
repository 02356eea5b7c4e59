"""The regression baseline of a conditional generator: the same network trained by L2 to predict
the target directly from the condition, ``x1_hat = f(0, t = 0, cond)``,

    L = E || f(0, 0, cond) - x1 ||^2   (the mean over valid elements, for padded sequences).

Its minimiser is the conditional mean E[x1 | cond]: the over-smoothed output whose global
variance falls below the data's (Toda & Tokuda 2007), which is what a flow's samples are compared
against in ``flowmatch bench speech`` (Matcha-TTS's and Voicebox's argument for a generative
decoder). The network keeps the velocity model's contract (called with x = 0 and t = 0), so the
same backbone and the same condition serve both, and "sampling" it is one evaluation
(:func:`predict`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.data.conditioning import Condition
from flowmatch.data.masks import check_mask, masked_mean
from flowmatch.models.contract import call_velocity

__all__ = ["RegressionObjective", "predict"]


def predict(model: Callable[..., Tensor], shape_like: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
    """The regression network's output for the rows of ``shape_like`` (only its shape, dtype and
    device are used): ``f(0, 0, cond)``, zero in the padding."""
    zeros = torch.zeros_like(shape_like)
    t = torch.zeros(shape_like.shape[0], dtype=shape_like.dtype, device=shape_like.device)
    out = call_velocity(model, zeros, t, cond, mask)
    return out if mask is None else out * mask


class RegressionObjective:
    """``loss(model, x0, x1, cond, mask=)``: E ||f(0, 0, cond) - x1||^2 (module docstring); x0 unused.

    ``name`` labels logs. Condition dropout makes no sense for a regression (nothing to guide), so
    there is none.
    """

    def __init__(self, *, name: str = "regression"):
        self.name = name

    def loss(
        self,
        model: nn.Module,
        x0: Tensor | None,
        x1: Tensor,
        cond: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        if mask is not None:
            mask = check_mask(mask, x1)
            x1 = x1 * mask
        return masked_mean((predict(model, x1, cond, mask) - x1) ** 2, mask)

    def __repr__(self) -> str:
        return f"RegressionObjective(name={self.name!r})"
