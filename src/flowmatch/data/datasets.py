"""PyTorch data sets and loaders as batch sources: ``(n, generator) -> batch`` from a
``torch.utils.data.Dataset``, an ``IterableDataset`` or a ``DataLoader``.

- :class:`DatasetBatches` wraps a map-style Dataset (``__getitem__`` and ``__len__``): the rows of
  each batch come from :func:`~flowmatch.data.rows.draw_rows`, the items are read (in DataLoader
  worker processes with ``num_workers``, into pinned memory with ``pin_memory``) and collated. The
  batches are drawn ahead by the workers, so they cannot take their rows from the Trainer's
  generator at the step: batch ``k``'s rows are drawn from a generator seeded with
  ``mix(seed, k)``, where ``seed`` is drawn once from the Trainer's generator at the first batch.
  The sampler's state is ``(seed, k)``: the Trainer checkpoints it (``sampler_state``) and a
  resumed run reads exactly the rows an uninterrupted run reads.
- :class:`LoaderBatches` wraps any iterable of batches (a DataLoader with its own sampler, or over
  an IterableDataset): it cuts the stream into batches of ``n`` rows and starts a new pass when
  one ends. Its position is not checkpointed (an iterator's state cannot be saved in general), so
  a resumed run draws different batches; the Trainer warns when it resumes one (``resumable``).
- :func:`as_batches` picks the source for an object: a tensor, a NumPy (memory-mapped) array, a
  map-style Dataset, a DataLoader or IterableDataset, or a callable, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from flowmatch._utils.validate import check_nonnegative_int, check_positive_int
from flowmatch.data.batches import SequenceBatch, TensorBatches
from flowmatch.data.mmap import MemmapBatches
from flowmatch.data.rows import ROW_SAMPLERS, draw_rows

__all__ = ["DatasetBatches", "LoaderBatches", "as_batches", "ITERABLE_BATCH"]

#: Items per read when :func:`as_batches` wraps an IterableDataset that yields one sample per item.
ITERABLE_BATCH = 256

_MASK64 = (1 << 64) - 1


def _mix(seed: int, k: int) -> int:
    """A 63-bit seed for batch ``k`` of the stream ``seed`` (splitmix64 of their sum)."""
    z = (seed + (k + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def _as_batch(batch: Any, device: torch.device, non_blocking: bool, name: str) -> Any:
    """A collated batch as a source returns it: a tensor, ``(x, cond)``, or a SequenceBatch, on ``device``."""
    if isinstance(batch, (tuple, list)) and len(batch) == 1:  # e.g. the items of a TensorDataset of one tensor
        batch = batch[0]
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(b, Tensor) for b in batch):
        return tuple(b.to(device, non_blocking=non_blocking) for b in batch)
    if isinstance(batch, SequenceBatch):
        return batch
    raise TypeError(
        f"{name} batches must be a tensor, a pair (x, cond) of tensors or a SequenceBatch, got {type(batch).__name__}"
    )


def _pinned(batch: Any) -> Any:
    """The tensors of a collated batch (a tensor, or a tuple/list of them) in pinned memory."""
    if isinstance(batch, Tensor):
        return batch.pin_memory()
    if isinstance(batch, (tuple, list)):
        return type(batch)(_pinned(b) for b in batch)
    return batch


def _rows_of(batch: Any) -> int:
    return int((batch[0] if isinstance(batch, tuple) else batch).shape[0])


class _RowStream:
    """The batch sampler of :class:`DatasetBatches`' DataLoader: batch k's rows for k = start, start + 1, ..."""

    def __init__(self, seed: int, start: int, n: int, n_rows: int, method: str):
        self.seed, self.start, self.n, self.n_rows, self.method = seed, start, n, n_rows, method

    def rows(self, k: int) -> list[int]:
        g = torch.Generator().manual_seed(_mix(self.seed, k))
        return draw_rows(self.n_rows, self.n, g, method=self.method).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            yield self.rows(k)
            k += 1


class DatasetBatches:
    """Batches of ``n`` distinct items of a map-style ``dataset``, resumable bit for bit.

    Args:
        dataset: a ``torch.utils.data.Dataset`` with ``__len__``; item ``i`` is a tensor (or a
            pair ``(x, cond)``, or anything ``collate_fn`` turns into one).
        collate_fn: merges the items of a batch (default ``torch.utils.data.default_collate``).
        num_workers: DataLoader worker processes that read the next batches ahead (0: read in
            the calling thread at each call).
        pin_memory: collate into pinned memory (fast, asynchronous copies to a GPU).
        prefetch_factor: batches each worker reads ahead.
        device: where the batches go.
        name: what the error messages call it.
        rows: the row sampler of :func:`~flowmatch.data.rows.draw_rows`.

    The rows of batch ``k`` depend only on ``(seed, k)`` (module docstring), so the batches are
    the same with any number of workers, and :meth:`sampler_state` / :meth:`load_sampler_state`
    (the Trainer stores them in its checkpoints) make a resumed run read the same rows as one
    that was never interrupted. Call :meth:`close` to stop the workers.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.arange(10.0)[:, None])
        >>> batches = DatasetBatches(ds, collate_fn=lambda items: torch.stack([i[0] for i in items]))
        >>> batches(4, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1])
    """

    resumable = True

    def __init__(
        self,
        dataset: Dataset,
        *,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        device: torch.device | str = "cpu",
        name: str = "data",
        rows: str = "auto",
    ):
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"{name} must be a map-style Dataset (use LoaderBatches), got {type(dataset).__name__}")
        try:
            n_rows = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{name} must be a Dataset with a length, got {type(dataset).__name__}") from None
        if n_rows == 0:
            raise ValueError(f"{name} must hold at least one item, got an empty {type(dataset).__name__}")
        if rows not in ROW_SAMPLERS:
            raise ValueError(f"row sampler must be one of {', '.join(ROW_SAMPLERS)}, got {rows!r}")
        self.dataset = dataset
        self.collate_fn = collate_fn or default_collate
        self.num_workers = check_nonnegative_int("num_workers", num_workers)
        self.prefetch_factor = check_positive_int("prefetch_factor", prefetch_factor)
        self.pin_memory = bool(pin_memory)
        self.device = torch.device(device)
        self.name = name
        self.rows = rows
        self._n_rows = int(n_rows)
        self._seed: int | None = None  # drawn from the Trainer's generator at the first batch
        self._k = 0  # batches handed out
        self._it: Iterator[Any] | None = None  # the DataLoader's iterator, at batch _it_k of size _it_n
        self._it_k, self._it_n = -1, -1

    def __len__(self) -> int:
        return self._n_rows

    def check_batch_size(self, n: int) -> None:
        if n > len(self):
            raise ValueError(f"batch size must not exceed the {self.name} set of {len(self)} items, got {n}")

    def _read(self, seed: int, k: int, n: int) -> Any:
        stream = _RowStream(seed, k, n, self._n_rows, self.rows)
        if self.num_workers == 0:
            items = [self.dataset[i] for i in stream.rows(k)]
            batch = self.collate_fn(items)
            return _pinned(batch) if self.pin_memory and torch.cuda.is_available() else batch
        if self._it is None or (self._it_k, self._it_n) != (k, n):  # a first call, a rewind or a resume
            self.close()
            loader = DataLoader(
                self.dataset,
                batch_sampler=stream,
                num_workers=self.num_workers,
                collate_fn=self.collate_fn,
                pin_memory=self.pin_memory,
                prefetch_factor=self.prefetch_factor,
            )
            self._it = iter(loader)
        batch = next(self._it)
        self._it_k, self._it_n = k + 1, n
        return batch

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Any:
        n = check_positive_int("batch size", n)
        self.check_batch_size(n)
        if self._seed is None:
            device = generator.device if generator is not None else None
            self._seed = int(torch.randint(1 << 62, (1,), generator=generator, device=device))
        batch = _as_batch(self._read(self._seed, self._k, n), self.device, self.pin_memory, self.name)
        self._k += 1
        return batch

    def sampler_state(self) -> Tensor:
        """The sampler's position: int64 ``[seeded, seed, k]`` (k = batches handed out)."""
        return torch.tensor([int(self._seed is not None), self._seed or 0, self._k], dtype=torch.int64)

    def load_sampler_state(self, state: Tensor) -> None:
        """Put the sampler back at a position from :meth:`sampler_state`."""
        state = state.to(torch.int64).cpu()
        if state.shape != (3,):
            raise ValueError(f"a dataset sampler state must be 3 integers, got shape {tuple(state.shape)}")
        seeded, seed, k = (int(v) for v in state)
        self._seed, self._k = (seed if seeded else None), k

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        self._it = None
        self._it_k, self._it_n = -1, -1


class LoaderBatches:
    """Batches of ``n`` rows cut from an iterable of batches: a DataLoader (its own sampler,
    workers and pinned memory), or any iterable yielding tensors or ``(x, cond)`` pairs.

    Rows are taken in the order the loader yields them; a remainder stays for the next call, and
    when a pass ends a new one starts (the next epoch). The ``generator`` a call receives is not
    used: the loader draws its own order.

    Resume limitation: the loader's position is not part of a checkpoint (``resumable = False``),
    so a resumed run starts a fresh pass and its batches differ from an uninterrupted run's; the
    Trainer warns when it resumes one. For a bit-exact resume wrap a map-style Dataset in
    :class:`DatasetBatches`.
    """

    resumable = False

    def __init__(self, loader: Iterable[Any], *, device: torch.device | str = "cpu", name: str = "data"):
        if not hasattr(loader, "__iter__"):
            raise TypeError(f"{name} must be an iterable of batches, got {type(loader).__name__}")
        self.loader = loader
        self.device = torch.device(device)
        self.name = name
        self._it: Iterator[Any] | None = None
        self._buffer: Any = None  # rows read but not yet handed out
        self.non_blocking = bool(getattr(loader, "pin_memory", False))

    def check_batch_size(self, n: int) -> None:
        return None

    def _next_chunk(self) -> Any:
        for fresh in (False, True):
            if self._it is None or fresh:
                self._it = iter(self.loader)
            try:
                return _as_batch(next(self._it), self.device, self.non_blocking, self.name)
            except StopIteration:
                self._it = None
        raise ValueError(f"{self.name} must yield at least one batch per pass, got an empty pass")

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Any:
        n = check_positive_int("batch size", n)
        parts, have = [], 0
        while have < n:
            chunk = self._buffer if self._buffer is not None else self._next_chunk()
            self._buffer = None
            if isinstance(chunk, SequenceBatch):
                raise TypeError(f"{self.name}: LoaderBatches cannot cut sequence batches; yield tensors or (x, cond)")
            take = min(n - have, _rows_of(chunk))
            head = chunk[:take] if isinstance(chunk, Tensor) else tuple(c[:take] for c in chunk)
            if take < _rows_of(chunk):
                self._buffer = chunk[take:] if isinstance(chunk, Tensor) else tuple(c[take:] for c in chunk)
            parts.append(head)
            have += take
        if isinstance(parts[0], Tensor):
            return torch.cat([p for p in parts if isinstance(p, Tensor)])
        return tuple(torch.cat([p[i] for p in parts]) for i in range(2))


def as_batches(obj: Any, *, device: torch.device | str = "cpu", name: str = "data") -> Any:
    """The batch source for ``obj``: a tensor ``(N, *dims)`` -> :class:`TensorBatches` (moved to
    ``device``); a ``np.memmap`` -> :class:`~flowmatch.data.mmap.MemmapBatches`; another NumPy
    array -> TensorBatches of it; a map-style Dataset -> :class:`DatasetBatches`; a DataLoader ->
    :class:`LoaderBatches`; an IterableDataset of single samples -> LoaderBatches over a DataLoader
    reading :data:`ITERABLE_BATCH` at a time; a callable (a batch source already) unchanged."""
    if isinstance(obj, Tensor):
        return TensorBatches(obj.to(device), name=name)
    if isinstance(obj, np.memmap):
        return MemmapBatches(obj, name=name, device=device)
    if isinstance(obj, np.ndarray):
        return TensorBatches(torch.from_numpy(np.asarray(obj, dtype=np.float32)).to(device), name=name)
    if isinstance(obj, DataLoader):
        return LoaderBatches(obj, device=device, name=name)
    if isinstance(obj, IterableDataset):
        return LoaderBatches(DataLoader(obj, batch_size=ITERABLE_BATCH), device=device, name=name)
    if isinstance(obj, Dataset):
        return DatasetBatches(obj, device=device, name=name)
    if callable(obj):
        return obj
    raise TypeError(
        f"{name} must be a batch source (n, generator) -> batch, a tensor, a NumPy array, a Dataset or a "
        f"DataLoader, got {type(obj).__name__}"
    )
