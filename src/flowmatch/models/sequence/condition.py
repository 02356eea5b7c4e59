"""Per-frame features of a :class:`~flowmatch.data.seqcond.SequenceCondition` for a sequence
backbone: what Matcha-TTS concatenates to the noisy mel (its aligned text encoding ``mu`` and a
speaker vector) and what Voicebox concatenates to it (the masked known frames, the "context").

:class:`SequenceConditionEncoder` maps a condition (or ``None``) of a ``(B, C, T)`` batch to
``(B, out_dim, T)`` features, the concatenation of, for the fields it is configured with:

- tokens ``(B, T)``: an embedding table of ``num_tokens`` ids (id 0 the padding id, a fixed zero
  vector) plus a learned **null row** for -1 (a dropped condition) and for an absent condition;
- features ``(B, feature_dim, T)``: a per-frame linear projection; a frame that is NaN in every
  feature (null) takes a learned null vector;
- speaker ``(B,)``: an embedding table with a learned null row (-1), broadcast over the frames;
- context ``(B, context_channels, T)``: the known frames as they are, plus one flag channel that
  is 1 where there is no context (a null row, all NaN, or no context field): zeros and the flag,
  so the next layer learns what "no context" means.

A field the encoder is configured with but the condition lacks reads as null (e.g. Voicebox
called without context); a field it is not configured with is an error. The features are
multiplied by the mask, so padded frames carry zeros whatever the condition holds there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_nonnegative_int, check_positive_int
from flowmatch.data.seqcond import NULL_TOKEN, SequenceCondition
from flowmatch.models.sequence.frames import FrameLinear

__all__ = ["SequenceConditionEncoder"]


def _null_frames(name: str, v: Tensor) -> Tensor:
    """``(B, T)`` bool: the frames of a ``(B, F, T)`` field that are NaN in every channel (null);
    a frame NaN in only some channels is an error."""
    nan = torch.isnan(v)
    null = nan.all(dim=1)
    if bool((nan.any(dim=1) & ~null).any()):
        raise ValueError(f"SequenceCondition.{name}: a frame must be NaN in every channel (null) or in none")
    return null


def _check_ids(name: str, ids: Tensor, count: int) -> None:
    bad = (ids < NULL_TOKEN) | (ids >= count)
    if bool(bad.any()):
        raise ValueError(
            f"SequenceCondition.{name} must lie in [0, {count}) (or be {NULL_TOKEN} for null), got {int(ids[bad][0])}"
        )


class SequenceConditionEncoder(nn.Module):
    """SequenceCondition (or None) -> per-frame features ``(B, out_dim, T)``.

    Args:
        num_tokens: number of token ids (0 = the padding id included); 0 for no tokens.
        num_speakers: number of speakers; 0 for no speaker.
        feature_dim: channels F of frame-aligned features; 0 for none.
        context_channels: channels of the infilling context (the data's C); 0 for none.
        dim: embedding size of tokens, projected features and speakers (each).

    ``out_dim = dim * (number of tokens/features/speaker fields) + context_channels + 1`` (the
    no-context flag, only with a context); 0 when nothing is configured (an unconditional model).
    Called as ``encoder(cond, x, mask)`` with ``x`` the ``(B, C, T)`` batch (its shape, dtype and
    device) and ``mask`` ``(B, 1, T)`` or None.
    """

    def __init__(
        self,
        num_tokens: int = 0,
        num_speakers: int = 0,
        feature_dim: int = 0,
        context_channels: int = 0,
        *,
        dim: int = 64,
    ):
        super().__init__()
        self.num_tokens = check_nonnegative_int("num_tokens", num_tokens)
        self.num_speakers = check_nonnegative_int("num_speakers", num_speakers)
        self.feature_dim = check_nonnegative_int("feature_dim", feature_dim)
        self.context_channels = check_nonnegative_int("context_channels", context_channels)
        self.dim = check_positive_int("condition dim", dim)
        # row num_tokens / num_speakers: the learned null; id 0 of the tokens: padding (zero, no gradient)
        self.tokens = nn.Embedding(self.num_tokens + 1, dim, padding_idx=0) if self.num_tokens else None
        self.speakers = nn.Embedding(self.num_speakers + 1, dim) if self.num_speakers else None
        self.features = FrameLinear(self.feature_dim, dim) if self.feature_dim else None
        self.null_features = nn.Parameter(torch.randn(dim) * 0.1) if self.feature_dim else None
        fields = sum(m is not None for m in (self.tokens, self.speakers, self.features))
        self.out_dim = dim * fields + (self.context_channels + 1 if self.context_channels else 0)

    def configured(self) -> tuple[str, ...]:
        """The condition fields this encoder reads."""
        names = ("tokens", "features", "speaker", "context")
        sizes = (self.num_tokens, self.feature_dim, self.num_speakers, self.context_channels)
        return tuple(n for n, s in zip(names, sizes) if s)

    def forward(self, cond: SequenceCondition | None, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, _, frames = x.shape
        if cond is not None:
            self._check(cond, b, frames)
        parts: list[Tensor] = []
        if self.tokens is not None:
            ids = None if cond is None else cond.tokens
            if ids is None:
                ids = torch.full((b, frames), NULL_TOKEN, dtype=torch.long, device=x.device)
            _check_ids("tokens", ids, self.num_tokens)
            ids = torch.where(ids == NULL_TOKEN, torch.full_like(ids, self.num_tokens), ids.long())
            parts.append(self.tokens(ids.to(self.tokens.weight.device)).transpose(1, 2).to(x.dtype))
        if self.features is not None and self.null_features is not None:
            feats = None if cond is None else cond.features
            null_f = self.null_features.to(x.dtype)[None, :, None].expand(b, -1, frames)
            if feats is None:
                parts.append(null_f)
            else:
                null = _null_frames("features", feats)[:, None, :]
                clean = torch.where(null, torch.zeros((), dtype=feats.dtype, device=feats.device), feats)
                parts.append(torch.where(null, null_f, self.features(clean.to(x.dtype))))
        if self.speakers is not None:
            spk = None if cond is None else cond.speaker
            if spk is None:
                spk = torch.full((b,), NULL_TOKEN, dtype=torch.long, device=x.device)
            _check_ids("speaker", spk, self.num_speakers)
            spk = torch.where(spk == NULL_TOKEN, torch.full_like(spk, self.num_speakers), spk.long())
            parts.append(self.speakers(spk).to(x.dtype)[:, :, None].expand(-1, -1, frames))
        if self.context_channels:
            ctx = None if cond is None else cond.context
            if ctx is None:
                ctx_null = torch.ones(b, 1, frames, dtype=torch.bool, device=x.device)
                ctx = torch.zeros(b, self.context_channels, frames, dtype=x.dtype, device=x.device)
            else:
                ctx_null = _null_frames("context", ctx)[:, None, :]
                ctx = torch.where(ctx_null, torch.zeros((), dtype=ctx.dtype, device=ctx.device), ctx).to(x.dtype)
            parts.extend([ctx, ctx_null.to(x.dtype)])
        if not parts:
            return x.new_zeros(b, 0, frames)
        out = torch.cat(parts, dim=1)
        return out if mask is None else out * mask

    def _check(self, cond: object, batch: int, frames: int) -> None:
        if not isinstance(cond, SequenceCondition):
            raise TypeError(f"a sequence model's cond must be a SequenceCondition or None, got {type(cond).__name__}")
        if cond.batch_size != batch:
            raise ValueError(f"cond must have one row per sequence ({batch}), got {cond.batch_size} rows")
        present = {n for n in ("tokens", "features", "speaker", "context") if getattr(cond, n) is not None}
        extra = sorted(present - set(self.configured()))
        if extra:
            raise ValueError(
                f"cond has fields this model was not built for: {', '.join(extra)} "
                f"(configured: {', '.join(self.configured()) or 'none'})"
            )
        for name in present - {"speaker"}:
            v = getattr(cond, name)
            if v.shape[-1] != frames:
                raise ValueError(f"SequenceCondition.{name} must have x's {frames} frames, got shape {tuple(v.shape)}")
        for name, size in (("features", self.feature_dim), ("context", self.context_channels)):
            v = getattr(cond, name)
            if v is not None and v.shape[1] != size:
                raise ValueError(f"SequenceCondition.{name} must have {size} channels, got shape {tuple(v.shape)}")
