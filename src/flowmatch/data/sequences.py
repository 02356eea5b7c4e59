"""A set of variable-length sequences (utterances) and a length-bucketing batch source over it.

:class:`SequenceSet` holds N utterances, each ``x`` of shape ``(C, T_i)``, with optional
frame-aligned ``tokens`` ``(T_i,)`` (integers >= 1: 0 is the padding id, -1 the null token) and
``features`` ``(F, T_i)``, and an optional utterance-level ``speaker`` (integer >= 0). They are
stored packed, all frames of all utterances in one ``(C, sum T_i)`` tensor plus offsets, so that
:meth:`SequenceSet.batch` gathers a padded ``(B, C, T)`` batch with one indexing operation.

:class:`SequenceBatches` is the training source: each call draws ``n`` distinct utterances from
its generator alone, with no state carried between calls (a fresh draw per step, like
:class:`~flowmatch.data.batches.TensorBatches`, so resuming a run needs no epoch position).
With ``bucket=True`` the draw comes from a window of utterances of similar length, which keeps
the padding small, and every utterance is still drawn with probability exactly ``n / N`` per
step (see :class:`SequenceBatches`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.data.batches import SequenceBatch
from flowmatch.data.masks import lengths_to_mask
from flowmatch.data.seqcond import SequenceCondition

__all__ = ["SequenceSet", "SequenceBatches", "Utterance", "padding_fraction", "DEFAULT_BUCKET_FACTOR"]

#: A bucketed draw picks n utterances from a window of ``bucket_factor * n`` of similar length.
DEFAULT_BUCKET_FACTOR = 4


@dataclass(frozen=True)
class Utterance:
    """One utterance of a :class:`SequenceSet`: ``x`` ``(C, T)`` and its optional fields."""

    x: Tensor
    tokens: Tensor | None = None
    features: Tensor | None = None
    speaker: int | None = None


def padding_fraction(mask: Tensor) -> float:
    """The share of a padded batch that is padding: padded frames / all frames of a ``(B, 1, T)`` mask."""
    return 1.0 - float((mask > 0).sum()) / max(mask.numel(), 1)


def _as_tensor(value: object, what: str) -> Tensor:
    """A CPU tensor of a tensor or a real numeric NumPy array (no copy where none is needed)."""
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
            raise ValueError(f"{what} must hold real numbers, got dtype {value.dtype}")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{what} must hold real numbers, got dtype {value.dtype}")
        return value.detach().cpu()
    raise TypeError(f"{what} must be a torch.Tensor or a NumPy array, got {type(value).__name__}")


class SequenceSet:
    """N variable-length sequences ``(C, T_i)`` with optional frame-aligned tokens and features and
    a speaker per utterance (the module docstring gives the rules).

    Args:
        x: one ``(C, T_i)`` array per utterance (any real dtype, stored float32), ``T_i >= 1``.
        tokens: None, or one ``(T_i,)`` integer array per utterance (values >= 1).
        features: None, or one ``(F, T_i)`` array per utterance (the same F for all).
        speaker: None, or one integer >= 0 per utterance (a sequence or an ``(N,)`` tensor).
        names: None, or one name per utterance (e.g. its file), used in error messages.

    Every rule is checked here with a one-line ``ValueError`` naming the utterance and the rule:
    at least one utterance, the same C (and F) for all, lengths >= 1, tokens and features as long
    as ``x``, every value finite.
    """

    def __init__(
        self,
        x: Sequence[Tensor | np.ndarray],
        *,
        tokens: Sequence[Tensor | np.ndarray] | None = None,
        features: Sequence[Tensor | np.ndarray] | None = None,
        speaker: Sequence[int] | Tensor | np.ndarray | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        if isinstance(x, (Tensor, np.ndarray)) or not isinstance(x, Sequence):
            raise TypeError(
                f"x must be a sequence (list) of (C, T_i) arrays, one per utterance, got {type(x).__name__}"
            )
        n = len(x)
        if n == 0:
            raise ValueError("a SequenceSet needs at least one utterance, got an empty x")
        self._names = None if names is None else tuple(str(s) for s in names)
        for field, values in (("tokens", tokens), ("features", features), ("names", names)):
            if values is not None and len(values) != n:
                raise ValueError(f"{field} must have one entry per utterance ({n}), got {len(values)}")
        xs = [self._frames(i, "x", v, 2) for i, v in enumerate(x)]
        lengths = [int(v.shape[1]) for v in xs]
        for i, v in enumerate(xs):
            if v.shape[0] < 1 or v.shape[1] < 1:
                raise ValueError(
                    f"{self._label(i)}: x must have shape (C, T) with C >= 1 and T >= 1, got {tuple(v.shape)}"
                )
            if v.shape[0] != xs[0].shape[0]:
                raise ValueError(
                    f"{self._label(i)}: every utterance must have the same channels C = {xs[0].shape[0]} "
                    f"(of {self._label(0)}), got x of shape {tuple(v.shape)}"
                )
        self._lengths = torch.tensor(lengths, dtype=torch.int64)
        self._offsets = torch.zeros(n + 1, dtype=torch.int64)
        self._offsets[1:] = torch.cumsum(self._lengths, 0)
        self._x = self._check_finite("x", torch.cat([v.to(torch.float32) for v in xs], dim=1))
        self._tokens = None if tokens is None else self._pack_tokens(tokens, lengths)
        self._features = None if features is None else self._pack_features(features, lengths)
        self._speaker = None if speaker is None else self._check_speaker(speaker, n)

    # ------------------------------------------------------------------ validation
    def _label(self, i: int) -> str:
        return f"sequence {i}" if self._names is None else f"sequence {i} ({self._names[i]})"

    def _frames(self, i: int, field: str, value: object, dims: int) -> Tensor:
        t = _as_tensor(value, f"{self._label(i)}: {field}")
        if t.dim() != dims:
            shape = "(C, T)" if field == "x" else "(F, T)" if dims == 2 else "(T,)"
            raise ValueError(f"{self._label(i)}: {field} must have shape {shape}, got {tuple(t.shape)}")
        return t

    def _utterance_of_column(self, column: int) -> int:
        return int(torch.searchsorted(self._offsets, torch.tensor(column), right=True)) - 1

    def _check_finite(self, field: str, packed: Tensor) -> Tensor:
        bad = ~torch.isfinite(packed)
        if bool(bad.any()):
            column = int(bad.any(dim=0).nonzero()[0])
            i = self._utterance_of_column(column)
            frame = column - int(self._offsets[i])
            raise ValueError(
                f"{self._label(i)}: {field} must be finite (after conversion to float32), got {int(bad.sum())} "
                f"NaN/Inf value(s) in the set, the first at frame {frame}"
            )
        return packed.contiguous()

    def _check_lengths(self, i: int, field: str, t: Tensor, length: int) -> None:
        if t.shape[-1] != length:
            raise ValueError(
                f"{self._label(i)}: {field} must have one entry per frame of x ({length}), got {t.shape[-1]}"
            )

    def _pack_tokens(self, tokens: Sequence[Tensor | np.ndarray], lengths: list[int]) -> Tensor:
        ts = [self._frames(i, "tokens", v, 1) for i, v in enumerate(tokens)]
        for i, t in enumerate(ts):
            if torch.is_floating_point(t):
                raise ValueError(f"{self._label(i)}: tokens must be integers, got dtype {t.dtype}")
            self._check_lengths(i, "tokens", t, lengths[i])
        packed = torch.cat([t.to(torch.int64) for t in ts])
        if bool((packed < 1).any()):
            i = self._utterance_of_column(int((packed < 1).nonzero()[0]))
            raise ValueError(
                f"{self._label(i)}: tokens must be >= 1 (0 is the padding id, -1 the null token), "
                f"got a minimum of {int(ts[i].min())}"
            )
        return packed

    def _pack_features(self, features: Sequence[Tensor | np.ndarray], lengths: list[int]) -> Tensor:
        fs = [self._frames(i, "features", v, 2) for i, v in enumerate(features)]
        for i, f in enumerate(fs):
            if f.shape[0] < 1 or f.shape[0] != fs[0].shape[0]:
                raise ValueError(
                    f"{self._label(i)}: every utterance must have the same F >= 1 features per frame "
                    f"(F = {fs[0].shape[0]} in {self._label(0)}), got features of shape {tuple(f.shape)}"
                )
            self._check_lengths(i, "features", f, lengths[i])
        return self._check_finite("features", torch.cat([f.to(torch.float32) for f in fs], dim=1))

    def _check_speaker(self, speaker: Sequence[int] | Tensor | np.ndarray, n: int) -> Tensor:
        if isinstance(speaker, (Tensor, np.ndarray)):
            s = _as_tensor(speaker, "speaker")
        else:
            if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in speaker):
                raise ValueError(f"speaker must hold one integer per utterance, got {list(speaker)[:5]!r}...")
            s = torch.tensor([int(v) for v in speaker], dtype=torch.int64)
        if s.dim() != 1 or s.shape[0] != n or torch.is_floating_point(s):
            raise ValueError(f"speaker must be {n} integers (one per utterance), got shape {tuple(s.shape)} {s.dtype}")
        if n and int(s.min()) < 0:
            i = int((s < 0).nonzero()[0])
            raise ValueError(f"{self._label(i)}: speaker must be >= 0 (-1 is the null speaker), got {int(s[i])}")
        return s.to(torch.int64)

    @classmethod
    def _packed(
        cls,
        x: Tensor,
        lengths: Tensor,
        tokens: Tensor | None,
        features: Tensor | None,
        speaker: Tensor | None,
        names: tuple[str, ...] | None,
    ) -> SequenceSet:
        """A set from already checked packed tensors (subset, to)."""
        out = cls.__new__(cls)
        out._x, out._lengths, out._names = x, lengths, names
        out._tokens, out._features, out._speaker = tokens, features, speaker
        out._offsets = torch.zeros(lengths.shape[0] + 1, dtype=torch.int64, device=lengths.device)
        out._offsets[1:] = torch.cumsum(lengths, 0)
        return out

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self._lengths.shape[0])

    @property
    def lengths(self) -> Tensor:
        """``(N,)`` int64: the number of frames of each utterance."""
        return self._lengths

    @property
    def channels(self) -> int:
        """C, the channels of every utterance."""
        return int(self._x.shape[0])

    @property
    def feature_dim(self) -> int | None:
        """F, the frame-aligned features per frame, or None without features."""
        return None if self._features is None else int(self._features.shape[0])

    @property
    def fields(self) -> tuple[str, ...]:
        """The optional fields present, a subset of ``("tokens", "features", "speaker")``."""
        present = {"tokens": self._tokens, "features": self._features, "speaker": self._speaker}
        return tuple(k for k, v in present.items() if v is not None)

    @property
    def names(self) -> tuple[str, ...] | None:
        """The utterances' names (e.g. their files), or None."""
        return self._names

    @property
    def device(self) -> torch.device:
        return self._x.device

    def __repr__(self) -> str:
        return f"SequenceSet(N={len(self)}, C={self.channels}, frames={int(self._offsets[-1])}, fields={self.fields})"

    # ------------------------------------------------------------------ access
    def _index(self, indices: object) -> Tensor:
        idx = indices if isinstance(indices, Tensor) else torch.as_tensor(np.asarray(indices))
        if idx.dim() != 1 or idx.numel() == 0 or torch.is_floating_point(idx) or idx.dtype == torch.bool:
            raise ValueError(
                f"indices must be a non-empty 1-D sequence of integers, got shape {tuple(idx.shape)} {idx.dtype}"
            )
        idx = idx.to(device=self.device, dtype=torch.int64)
        if int(idx.min()) < 0 or int(idx.max()) >= len(self):
            raise ValueError(f"indices must lie in [0, {len(self)}), got {int(idx.min())}..{int(idx.max())}")
        return idx

    def __getitem__(self, i: int) -> Utterance:
        """Utterance ``i`` (its own tensors, views into the packed storage)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(self):
            raise IndexError(f"utterance index must be an integer in [0, {len(self)}), got {i!r}")
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        return Utterance(
            x=self._x[:, a:b],
            tokens=None if self._tokens is None else self._tokens[a:b],
            features=None if self._features is None else self._features[:, a:b],
            speaker=None if self._speaker is None else int(self._speaker[i]),
        )

    def subset(self, indices: Sequence[int] | Tensor) -> SequenceSet:
        """The utterances ``indices`` in that order, every field kept with its utterance (for
        train/test splits, e.g. ``set.subset(perm[:k])`` and ``set.subset(perm[k:])``)."""
        idx = self._index(indices)
        lengths = self._lengths[idx]
        starts = torch.repeat_interleave(self._offsets[idx], lengths)
        first = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        cols = starts + torch.arange(int(lengths.sum()), device=self.device) - first
        return SequenceSet._packed(
            self._x[:, cols],
            lengths,
            None if self._tokens is None else self._tokens[cols],
            None if self._features is None else self._features[:, cols],
            None if self._speaker is None else self._speaker[idx],
            None if self._names is None else tuple(self._names[i] for i in idx.tolist()),
        )

    def to(self, device: torch.device | str) -> SequenceSet:
        """This set with every tensor on ``device`` (so batches are gathered there)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return SequenceSet._packed(
            self._x.to(device),
            self._lengths.to(device),
            move(self._tokens),
            move(self._features),
            move(self._speaker),
            self._names,
        )

    def batch(self, indices: Sequence[int] | Tensor, *, pad_multiple: int = 1) -> SequenceBatch:
        """The utterances ``indices`` as a :class:`~flowmatch.data.batches.SequenceBatch`.

        ``x`` ``(B, C, T)`` holds each utterance in its first frames and exact zeros after them,
        ``T`` the longest length rounded up to a multiple of ``pad_multiple`` (e.g. a U-Net's
        downsampling factor); ``mask`` ``(B, 1, T)`` is 1 on the valid frames; ``cond`` a
        :class:`~flowmatch.data.seqcond.SequenceCondition` of the fields present (tokens padded
        with 0, features with 0.0), or None when the set has none.
        """
        pad_multiple = check_positive_int("pad_multiple", pad_multiple)
        idx = self._index(indices)
        lengths = self._lengths[idx]
        T = math.ceil(int(lengths.max()) / pad_multiple) * pad_multiple
        frames = torch.arange(T, device=self.device)
        valid = frames[None, :] < lengths[:, None]  # (B, T)
        cols = torch.where(valid, self._offsets[idx][:, None] + frames[None, :], 0)
        x = torch.where(valid[None], self._x[:, cols], 0.0).permute(1, 0, 2).contiguous()
        cond = {}
        if self._tokens is not None:
            cond["tokens"] = torch.where(valid, self._tokens[cols], 0)
        if self._features is not None:
            cond["features"] = torch.where(valid[None], self._features[:, cols], 0.0).permute(1, 0, 2).contiguous()
        if self._speaker is not None:
            cond["speaker"] = self._speaker[idx]
        mask = lengths_to_mask(lengths, T)
        return SequenceBatch(x=x, mask=mask, cond=SequenceCondition(**cond) if cond else None)


class SequenceBatches:
    """Training batches of ``n`` distinct utterances of a :class:`SequenceSet`, a fresh draw per call.

    ``bucket=False``: a uniform random subset. ``bucket=True`` (default): the utterances are laid
    once on a circle in a zigzag of length order (the even ranks of the length-sorted order going
    up, then the odd ranks coming down, so neighbours on the circle differ by at most two ranks,
    the wrap-around included); each call draws a uniform start on the circle and takes ``n`` of
    the ``w = min(N, bucket_factor * n)`` consecutive utterances from it, uniformly. Every
    utterance lies in exactly ``w`` of the N windows, so it is drawn with probability
    ``(w / N) * (n / w) = n / N`` per step, as with a uniform subset; the window spans at most
    ``2 w`` length ranks, which is what keeps the padding small. A call costs O(w) = O(n)
    (bucketed) or O(N) (uniform); the circle is built once, in O(N log N).

    All randomness comes from the ``generator`` of each call (on its device) and no state is kept,
    so the same generator state gives the same batch. ``pad_multiple`` as in :meth:`SequenceSet.batch`.
    """

    def __init__(
        self,
        sequences: SequenceSet,
        *,
        bucket: bool = True,
        bucket_factor: int = DEFAULT_BUCKET_FACTOR,
        pad_multiple: int = 1,
        name: str = "sequences",
    ) -> None:
        if not isinstance(sequences, SequenceSet):
            raise TypeError(f"sequences must be a SequenceSet, got {type(sequences).__name__}")
        self.sequences = sequences
        self.bucket = bool(bucket)
        self.bucket_factor = check_positive_int("bucket_factor", bucket_factor)
        self.pad_multiple = check_positive_int("pad_multiple", pad_multiple)
        self.name = name
        order = torch.sort(sequences.lengths.cpu(), stable=True).indices
        self._circle = torch.cat([order[0::2], order[1::2].flip(0)])

    def __len__(self) -> int:
        return len(self.sequences)

    def window(self, n: int) -> int:
        """The number of neighbouring utterances a bucketed batch of ``n`` is drawn from."""
        return min(len(self), self.bucket_factor * n)

    def check_batch_size(self, n: int) -> None:
        if n > len(self):
            raise ValueError(f"batch size must not exceed the {self.name} set of {len(self)} utterances, got {n}")

    def indices(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The ``(n,)`` distinct utterance indices of one draw (what :meth:`__call__` batches)."""
        n = check_positive_int("batch size", n)
        self.check_batch_size(n)
        device = generator.device if generator is not None else torch.device("cpu")
        N = len(self)
        if not self.bucket:
            return torch.randperm(N, generator=generator, device=device)[:n].cpu()
        w = self.window(n)
        start = torch.randint(N, (1,), generator=generator, device=device)
        pick = torch.randperm(w, generator=generator, device=device)[:n]
        return self._circle[((start + pick) % N).cpu()]

    def __call__(self, n: int, generator: torch.Generator | None = None) -> SequenceBatch:
        return self.sequences.batch(self.indices(n, generator), pad_multiple=self.pad_multiple)
