"""Infilling with a flow trained by :class:`~flowmatch.objectives.infill.InfillingMatcher`
(Voicebox, Le et al. NeurIPS 2023): regenerate a span of each sequence from the rest.

The context ``x1 * (1 - span) * mask`` goes into the condition, the ODE is integrated from noise
with the mask (padding stays zero), and the result takes the generated frames inside the span and
the input frames outside it, exactly: ``out = span * x_gen + (1 - span) * x1`` (times the mask).
A span of every valid frame is text-to-speech from the text and speaker alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowmatch.data.masks import check_mask
from flowmatch.data.seqcond import SequenceCondition
from flowmatch.sampling.ode import sample

__all__ = ["InfillResult", "infill"]


@dataclass
class InfillResult:
    """``x``: the sequences with their spans regenerated (context frames equal to the input);
    ``generated``: the raw end point of the ODE on every frame; ``nfe``: network evaluations."""

    x: Tensor
    generated: Tensor
    nfe: int


def infill(
    model: Callable[..., Tensor],
    x1: Tensor,
    span: Tensor,
    *,
    mask: Tensor | None = None,
    cond: SequenceCondition | None = None,
    generator: torch.Generator | None = None,
    x0: Tensor | None = None,
    **solver: Any,
) -> InfillResult:
    """Regenerate ``span`` (``(B, 1, T)`` or x1's shape, 1 = to generate) of ``x1`` ``(B, C, T)``.

    Args:
        model: a field trained with :class:`~flowmatch.objectives.infill.InfillingMatcher` (or a
            :class:`~flowmatch.models.guidance.GuidedModel` around one).
        x1: the sequences; their frames outside the span are the context (inside, ignored).
        span: where to generate.
        mask: the valid frames (None: all).
        cond: the rest of the condition (tokens, speaker); the context is set here.
        generator: draws the initial noise (unless ``x0`` is given).
        x0: the initial noise, x1's shape (default: N(0, I) from ``generator``).
        **solver: keywords of :func:`flowmatch.sample` (``solver``, ``steps``, ...).
    """
    span = check_mask(span, x1, name="span")
    valid = torch.ones_like(x1[:, :1]) if mask is None else check_mask(mask, x1)
    context = x1 * (1 - span) * valid
    full = cond.with_context(context) if cond is not None else SequenceCondition(context=context)
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
    res = sample(model, x0, cond=full, mask=valid if mask is not None else None, **solver)
    out = torch.where(span > 0, res.x, x1) * valid  # where: the context is copied bit for bit
    return InfillResult(x=out, generated=res.x, nfe=res.nfe)
