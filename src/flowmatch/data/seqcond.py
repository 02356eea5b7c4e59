"""The condition of a sequence: what a text-to-speech decoder (Matcha-TTS) or an infilling model
(Voicebox) is told about the utterance it generates.

:class:`SequenceCondition` bundles, all optional, one row per utterance of a ``(B, C, T)`` batch:

- ``tokens`` ``(B, T)`` integers: a frame-aligned symbol per frame (phoneme ids repeated over
  their durations: the stand-in for Matcha's aligned text-encoder output ``mu``);
- ``features`` ``(B, F, T)`` floats: any frame-aligned features, concatenated per frame;
- ``speaker`` ``(B,)`` integers: an utterance-level class (a speaker embedding's index);
- ``context`` ``(B, C, T)`` floats: the known frames ``x1 * (1 - span)`` an infilling model
  regenerates the rest from (Voicebox), zero inside the span and in the padding.

It travels like a tensor condition (:mod:`flowmatch.data.conditioning`): rows are reordered by
indexing (``cond[idx]``) with x1 by the couplings, split by slicing in chunked samplers, joined
by :meth:`cat` for classifier-free guidance, moved by :meth:`to`. The **null condition** of a row
(condition dropout) is written in the fields themselves, as for tensors: tokens and speaker -1
(:data:`~flowmatch.data.conditioning.NULL_LABEL`), features and context NaN; a model reads a null
row as "no text, no speaker, no context".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["SequenceCondition", "NULL_TOKEN"]

#: the value of a null (dropped) token or speaker
NULL_TOKEN = -1

_INTEGER = ("tokens", "speaker")


@dataclass(frozen=True)
class SequenceCondition:
    """The per-utterance condition of a batch of sequences (see the module docstring)."""

    tokens: Tensor | None = None
    features: Tensor | None = None
    speaker: Tensor | None = None
    context: Tensor | None = None

    def __post_init__(self) -> None:
        present = self._present()
        if not present:
            raise ValueError("a SequenceCondition needs at least one of tokens, features, speaker, context")
        rows = {name: int(v.shape[0]) if v.dim() else -1 for name, v in present.items()}
        if len(set(rows.values())) != 1:
            raise ValueError(f"every field of a SequenceCondition must have one row per utterance, got {rows}")
        expected = {"tokens": 2, "features": 3, "speaker": 1, "context": 3}
        for name, v in present.items():
            if v.dim() != expected[name]:
                raise ValueError(
                    f"SequenceCondition.{name} must have {expected[name]} dimensions "
                    f"({_SHAPES[name]}), got shape {tuple(v.shape)}"
                )
            if (name in _INTEGER) == torch.is_floating_point(v) or v.dtype == torch.bool:
                kind = "an integer" if name in _INTEGER else "a floating"
                raise TypeError(f"SequenceCondition.{name} must be {kind} tensor, got dtype {v.dtype}")
        frames = {name: int(v.shape[-1]) for name, v in present.items() if name != "speaker"}
        if len(set(frames.values())) > 1:
            raise ValueError(f"the frame-aligned fields of a SequenceCondition must have equal lengths, got {frames}")

    def _present(self) -> dict[str, Tensor]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                if not isinstance(v, Tensor):
                    raise TypeError(f"SequenceCondition.{f.name} must be a tensor or None, got {type(v).__name__}")
                out[f.name] = v
        return out

    # ------------------------------------------------------------------ tensor-like
    @property
    def shape(self) -> torch.Size:
        """``(B,)``: the number of rows (so that ``cond.shape[0]`` reads as for a tensor)."""
        return torch.Size([self.batch_size])

    @property
    def batch_size(self) -> int:
        return int(next(iter(self._present().values())).shape[0])

    @property
    def device(self) -> torch.device:
        return next(iter(self._present().values())).device

    def __len__(self) -> int:
        return self.batch_size

    def dim(self) -> int:
        """1: a condition with one row per sample (the rows are what indexing selects)."""
        return 1

    def __getitem__(self, index) -> SequenceCondition:
        """The rows ``index`` (an index tensor, a slice or an integer list) of every field."""
        return replace(self, **{k: v[index] for k, v in self._present().items()})

    def to(self, *args, **kwargs) -> SequenceCondition:
        """Every field moved by ``Tensor.to`` (device only: dtypes are the fields' own)."""
        device = kwargs.pop("device", None)
        if args and device is None:
            device = args[0]
        if device is None or isinstance(device, torch.dtype):
            return self
        return replace(self, **{k: v.to(device) for k, v in self._present().items()})

    @staticmethod
    def cat(conds: Sequence[SequenceCondition]) -> SequenceCondition:
        """The rows of several conditions with the same fields, one after another."""
        names = [tuple(c._present()) for c in conds]
        if len(set(names)) != 1:
            raise ValueError(f"only conditions with the same fields can be joined, got {names}")
        return SequenceCondition(**{k: torch.cat([getattr(c, k) for c in conds]) for k in names[0]})

    def with_context(self, context: Tensor | None) -> SequenceCondition:
        """This condition with ``context`` set (None removes it)."""
        return replace(self, context=context)

    # ------------------------------------------------------------------ the null condition
    def null_like(self) -> SequenceCondition:
        """Every row null: tokens and speaker -1, features and context NaN."""
        return replace(
            self,
            **{
                k: torch.full_like(v, NULL_TOKEN) if k in _INTEGER else torch.full_like(v, float("nan"))
                for k, v in self._present().items()
            },
        )

    def null_mask(self) -> Tensor:
        """``(B,)`` bool: the rows that are null in every field."""
        masks = []
        for k, v in self._present().items():
            flat = v.reshape(v.shape[0], -1)
            masks.append((flat == NULL_TOKEN).all(dim=1) if k in _INTEGER else torch.isnan(flat).all(dim=1))
        out = masks[0]
        for m in masks[1:]:
            out = out & m
        return out

    def where_null(self, drop: Tensor) -> SequenceCondition:
        """Rows with ``drop[b]`` True replaced by the null condition (``drop`` ``(B,)`` bool)."""
        null = self.null_like()
        out = {}
        for k, v in self._present().items():
            shape = (v.shape[0],) + (1,) * (v.dim() - 1)
            out[k] = torch.where(drop.reshape(shape).to(v.device), getattr(null, k), v)
        return replace(self, **out)


_SHAPES = {"tokens": "(B, T)", "features": "(B, F, T)", "speaker": "(B,)", "context": "(B, C, T)"}
