"""Minibatch sources for training: a callable ``(n, generator) -> (n, *dims)`` tensor.

A source may also return a :class:`SequenceBatch` (padded sequences with their mask and
condition, :mod:`flowmatch.data.sequences`) or, for labelled data, the pair ``(x1, cond)``.

Two kinds: :class:`TensorBatches` draws rows of a fixed training set (distinct rows within a
batch, fresh random subset each step, so no epoch position has to be checkpointed; O(batch) per
step on large sets, :func:`flowmatch.data.rows.draw_rows`), and :class:`StreamBatches` draws fresh
samples from a distribution (e.g. Gaussian noise) each step. Memory-mapped arrays, map-style
Datasets and DataLoaders: :mod:`flowmatch.data.mmap` and :mod:`flowmatch.data.datasets`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.data.rows import ROW_SAMPLERS, draw_rows
from flowmatch.data.seqcond import SequenceCondition

__all__ = ["TensorBatches", "StreamBatches", "SequenceBatch", "NoiseLike"]


@dataclass
class SequenceBatch:
    """A batch of variable-length sequences: ``x`` ``(B, C, T)`` padded with zeros, ``mask``
    ``(B, 1, T)`` (1 = valid frame, :mod:`flowmatch.data.masks`) and the condition of each row
    (a :class:`~flowmatch.data.seqcond.SequenceCondition`, or None)."""

    x: Tensor
    mask: Tensor
    cond: SequenceCondition | None = None


class TensorBatches:
    """Batches of ``n`` distinct rows of ``data`` (N, *dims), a fresh uniform subset per call.

    With ``cond`` (N, ...) (class labels or condition features, one row per data row) each call
    returns the pair ``(data[idx], cond[idx])``: the condition stays attached to its sample.
    ``rows`` is the row sampler of :func:`~flowmatch.data.rows.draw_rows` (default ``"auto"``:
    a full permutation up to 65536 rows, as earlier versions drew, O(batch) rejection above).
    """

    def __init__(self, data: Tensor, *, name: str = "data", cond: Tensor | None = None, rows: str = "auto"):
        if data.dim() < 2 or data.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty (N, *dims) tensor, got shape {tuple(data.shape)}")
        if cond is not None and (cond.dim() < 1 or cond.shape[0] != data.shape[0]):
            raise ValueError(
                f"{name} conditions must have one row per data row ({data.shape[0]}), got shape {tuple(cond.shape)}"
            )
        if rows not in ROW_SAMPLERS:
            raise ValueError(f"row sampler must be one of {', '.join(ROW_SAMPLERS)}, got {rows!r}")
        self.data = data
        self.cond = None if cond is None else cond.to(data.device)
        self.name = name
        self.rows = rows

    @property
    def dim(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def check_batch_size(self, n: int) -> None:
        if n > len(self):
            raise ValueError(f"batch size must not exceed the {self.name} set of {len(self)} rows, got {n}")

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
        n = check_positive_int("batch size", n)
        self.check_batch_size(n)
        idx = draw_rows(len(self), n, generator, device=self.data.device, method=self.rows)
        if self.cond is not None:
            return self.data[idx], self.cond[idx]
        return self.data[idx]


class StreamBatches:
    """Batches drawn fresh from ``sample(n, generator=...)`` at every call (an infinite source)."""

    def __init__(self, sample: Callable[..., Tensor], *, device: torch.device | str = "cpu", name: str = "data"):
        self.sample = sample
        self.device = torch.device(device)
        self.name = name

    def check_batch_size(self, n: int) -> None:
        return None

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sample(n, generator=generator).to(self.device)


class NoiseLike:
    """Standard normal noise shaped like each target batch: the source of padded sequences, whose
    length T changes from batch to batch. The Trainer draws it after the target batch
    (:func:`flowmatch.training.prefetch.draw_step` calls :meth:`sample_like`)."""

    name = "gaussian noise"

    def check_batch_size(self, n: int) -> None:
        return None

    def sample_like(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """N(0, I) of ``x``'s shape, dtype and device."""
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        raise TypeError("NoiseLike draws noise shaped like a target batch: call sample_like(x1), not (n)")
