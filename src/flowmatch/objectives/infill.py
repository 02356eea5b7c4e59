"""Infilling by flow matching (Voicebox: Le et al., "Voicebox: Text-guided multilingual universal
speech generation at scale", NeurIPS 2023, Sec. 3).

Each training utterance x1 ``(C, T)`` with L valid frames gets a contiguous *span* of
``ceil(r L)`` frames, r ~ U[span_min, span_max] (Voicebox: 70% to 100%), its start uniform among
the positions that fit. The model sees the rest as the context

    ctx = x1 * (1 - span) * mask      (zero inside the span and in the padding),

added to the condition (:attr:`~flowmatch.data.seqcond.SequenceCondition.context`), and the CFM
loss is the mean squared error over the span's valid elements only: the context frames are given,
not generated. Condition dropout (``cond_dropout`` p) drops the text, speaker and context of a row
together (Voicebox drops the audio context and the text), which makes the same network the
unconditional field of classifier-free guidance; a dropped row has no context, so its loss covers
the whole utterance. A span covering the whole utterance (r = 1) is plain text-to-speech.

Sampling (:func:`flowmatch.sampling.infill.infill`) integrates the field from noise with the
context in the condition and returns the generated span with the context frames copied from the
input exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_probability
from flowmatch.data.conditioning import Condition, null_mask
from flowmatch.data.masks import mask_lengths
from flowmatch.data.seqcond import SequenceCondition
from flowmatch.objectives.cfm import FlowMatcher

__all__ = ["InfillingMatcher", "draw_spans", "context_of"]


def draw_spans(mask: Tensor, span_min: float, span_max: float, *, generator: torch.Generator | None = None) -> Tensor:
    """``(B, 1, T)`` 0/1 spans: row b gets ceil(r_b L_b) consecutive valid frames (at least one),
    r_b ~ U[span_min, span_max], starting at floor(u_b (L_b - len_b + 1)); two draws per row from
    ``generator`` (r then u)."""
    lengths = mask_lengths(mask).to(mask.device)
    b, T = mask.shape[0], mask.shape[-1]
    r = span_min + (span_max - span_min) * torch.rand(b, generator=generator, device=mask.device)
    u = torch.rand(b, generator=generator, device=mask.device)
    span_len = torch.clamp(torch.ceil(r * lengths).long(), min=1)
    span_len = torch.minimum(span_len, lengths)
    start = torch.floor(u * (lengths - span_len + 1).to(u.dtype)).long()
    frames = torch.arange(T, device=mask.device)[None, :]
    span = (frames >= start[:, None]) & (frames < (start + span_len)[:, None])
    return span.to(mask.dtype).unsqueeze(1)


def context_of(x1: Tensor, span: Tensor, mask: Tensor | None = None) -> Tensor:
    """The context an infilling model sees: ``x1 * (1 - span) * mask`` (zero in the span and padding)."""
    ctx = x1 * (1 - span)
    return ctx if mask is None else ctx * mask


class InfillingMatcher(FlowMatcher):
    """A :class:`FlowMatcher` that trains infilling (module docstring).

    Args:
        path: the conditional path, as for :class:`FlowMatcher`.
        coupling: as for :class:`FlowMatcher` (keyword arguments such as ``name`` and
            ``cond_dropout`` too; the dropout drops text, speaker and context of a row together).
        time_sampler: as for :class:`FlowMatcher`.
        span_min: the smallest fraction of an utterance's valid frames in its span (> 0).
        span_max: the largest, span_min <= span_max <= 1 (Voicebox: 0.7 and 1.0).
    """

    def __init__(self, path, coupling=None, time_sampler=None, *, span_min: float = 0.7, span_max: float = 1.0, **kw):
        super().__init__(path, coupling, time_sampler, **kw)
        span_min = check_probability("span_min", span_min)
        span_max = check_probability("span_max", span_max)
        if not 0 < span_min <= span_max:
            raise ValueError(
                f"the span fraction must satisfy 0 < span_min <= span_max <= 1, got [{span_min}, {span_max}]"
            )
        self.span_min, self.span_max = span_min, span_max

    def extend_condition(
        self, x1: Tensor, cond: Condition | None, mask: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Condition | None, Tensor | None]:
        if x1.dim() != 3:
            raise ValueError(f"infilling needs sequences of shape (B, C, T), got {tuple(x1.shape)}")
        if cond is not None and not isinstance(cond, SequenceCondition):
            raise TypeError(
                f"infilling needs a SequenceCondition (or None) as its condition, got {type(cond).__name__}"
            )
        valid = torch.ones_like(x1[:, :1]) if mask is None else mask
        span = draw_spans(valid, self.span_min, self.span_max, generator=generator)
        ctx = context_of(x1, span, valid)
        cond = SequenceCondition(context=ctx) if cond is None else cond.with_context(ctx)
        return cond, span * valid

    def sample(self, x0, x1, cond=None, **kw):
        s = super().sample(x0, x1, cond, **kw)
        if s.cond is not None and self.cond_dropout > 0:  # a dropped row has no context: the loss covers it all
            dropped = null_mask(s.cond).to(x1.dtype).reshape(-1, 1, 1)
            valid = torch.ones_like(x1[:, :1]) if s.mask is None else s.mask
            span = valid if s.loss_mask is None else s.loss_mask
            s.loss_mask = span * (1 - dropped) + valid * dropped
        return s

    def __repr__(self) -> str:
        return f"Infilling{super().__repr__()[:-1]}, span=[{self.span_min}, {self.span_max}])"
