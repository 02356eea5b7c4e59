"""Memory-mapped ``.npy`` arrays as batch sources: data sets larger than memory.

``np.load(path, mmap_mode="r")`` maps the file instead of reading it; :class:`MemmapBatches` then
reads only the rows of each batch (the indices sorted, so the reads go forward through the file,
one gather, then put back in their random order) and never copies the array. Its batches are the
batches :class:`~flowmatch.data.batches.TensorBatches` draws from the same rows in memory with the
same generator state (both take their rows from :func:`~flowmatch.data.rows.draw_rows`), so a run
is the same run whether its data is mapped or loaded.

A run's train/test split of a mapped file (:func:`mmap_split`) is the split
:func:`~flowmatch.data.split.train_test_split` makes in memory, drawn the same way: a random
permutation ``pi`` of the rows, the test part ``pi[:n_test]`` read once into a small tensor, the
train part the rows ``pi[n_test:]`` left on disk, kept as that index (8 bytes a row, against the
4 D bytes of a float32 row). So a run over a mapped file draws exactly the splits, batches and
weights of the same run over the file read whole (``--mmap off``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.data.rows import ROW_SAMPLERS, draw_rows

__all__ = ["open_npy", "MemmapBatches", "mmap_split", "use_mmap", "MMAP_MODES", "MMAP_AUTO_BYTES"]

MMAP_MODES = ("auto", "on", "off", "pread")

#: ``--mmap auto`` maps ``.npy`` files at least this large (256 MiB) and reads smaller ones whole.
MMAP_AUTO_BYTES = 256 << 20

_NPY_MAGIC = b"\x93NUMPY"


def use_mmap(path: str | os.PathLike[str], mode: str) -> bool:
    """Whether a data file is memory-mapped under ``mode`` (``--mmap``): ``"on"`` maps every
    ``.npy`` file, ``"pread"`` too (its training rows then read by ``os.preadv``, see
    :class:`MemmapBatches`), ``"off"`` none, ``"auto"`` those of at least :data:`MMAP_AUTO_BYTES`.
    Other formats (.npz, .csv, .pt) are always read whole."""
    if mode not in MMAP_MODES:
        raise ValueError(f"mmap must be one of {', '.join(MMAP_MODES)}, got {mode!r}")
    path = Path(path)
    if path.suffix.lower() != ".npy" or mode == "off" or not path.is_file():
        return False
    return mode in ("on", "pread") or path.stat().st_size >= MMAP_AUTO_BYTES


def open_npy(path: str | os.PathLike[str]) -> np.memmap:
    """Map the ``.npy`` file ``path`` read-only, checked as :func:`~flowmatch.data.files.load_array`
    checks a data file: a real numeric 2-D ``(N, D)`` array, ``N, D >= 1``; nothing is read but the
    header (finiteness is checked row by row as rows are read)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
        if head != _NPY_MAGIC:
            raise ValueError(f"a .npy file must start with the bytes {_NPY_MAGIC!r}, got {head!r}")
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"malformed npy file {str(path)!r}: {reason}") from None
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"malformed npy file {str(path)!r}: array dtype {arr.dtype} is not real numeric")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"data array in {str(path)!r} must be 2-D (N, D) with N, D >= 1, got shape {arr.shape}")
    return arr


class MemmapBatches:
    """Batches of ``n`` distinct rows of a memory-mapped array ``(N, *dims)``, as float32 tensors.

    Args:
        array: a NumPy array, normally ``np.load(path, mmap_mode="r")`` (:func:`open_npy`).
        name: what the error messages call it.
        cond: optional conditions ``(N, ...)`` (a tensor in memory), one per array row; each call
            then returns ``(x1, cond)``.
        index: int64 ``(M,)``: the set is the array rows ``index`` (row k of the set is array row
            ``index[k]``, e.g. the train part of a split); None: every row, in order.
        device: where the batches go.
        rows: the row sampler of :func:`~flowmatch.data.rows.draw_rows`.
        pread: read each row with ``os.preadv`` from the file instead of through the mapping
            (``array`` must be a ``np.memmap`` with C-contiguous rows). The rows read through a
            mapping stay mapped in the process: reclaimable page cache, but counted in its
            resident set, and mapped in large folios (reading 512 random rows of a 2.56 GB file
            maps about 1 GB of it). Read with ``pread`` they go through the page cache without
            entering the resident set, for one system call a row (about 1 ms a batch of 512
            against 0.3 ms mapped: docs/benchmarks.md).

    Each call costs O(n log n) plus the reads of its ``n`` rows, whatever ``N``. A row that is not
    finite is a ValueError when it is drawn (the file is never scanned whole).
    """

    def __init__(
        self,
        array: np.ndarray,
        *,
        name: str = "data",
        cond: Tensor | None = None,
        index: Tensor | None = None,
        device: torch.device | str = "cpu",
        rows: str = "auto",
        pread: bool = False,
    ):
        if not isinstance(array, np.ndarray) or array.ndim < 2:
            raise ValueError(f"{name} must be an (N, *dims) NumPy array, got {type(array).__name__}")
        if rows not in ROW_SAMPLERS:
            raise ValueError(f"row sampler must be one of {', '.join(ROW_SAMPLERS)}, got {rows!r}")
        self.array = array
        self.name = name
        self.device = torch.device(device)
        self.rows = rows
        self._fd: int | None = None
        if pread:
            row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:]))
            if not isinstance(array, np.memmap) or array.filename is None or not array.flags.c_contiguous:
                raise ValueError(f"pread needs a C-ordered memory-mapped array (np.memmap), got {type(array).__name__}")
            self._fd, self._offset, self._row_bytes = os.open(array.filename, os.O_RDONLY), array.offset, row_bytes
        self.index = None if index is None else index.to(torch.int64).cpu()
        n_kept = int(array.shape[0]) if self.index is None else len(self.index)
        if n_kept == 0:
            raise ValueError(f"{name} must hold at least one row, got an empty index")
        self._len = n_kept
        if cond is not None and (cond.dim() < 1 or cond.shape[0] != n_kept):
            raise ValueError(f"{name} conditions must have one row per data row ({n_kept}), got {tuple(cond.shape)}")
        self.cond = None if cond is None else cond.to(self.device)

    @property
    def dim(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape[1:])

    def __len__(self) -> int:
        return self._len

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]
            self._fd = None

    def to(self, device: torch.device | str) -> MemmapBatches:
        """The same rows with the batches (and conditions) on ``device``."""
        out = copy.copy(self)
        out.device = torch.device(device)
        out.cond = None if self.cond is None else self.cond.to(out.device)
        if self._fd is not None:  # its own descriptor: each copy closes its own
            out._fd = os.open(str(self.array.filename), os.O_RDONLY)  # type: ignore[attr-defined]
        return out

    def check_batch_size(self, n: int) -> None:
        if n > len(self):
            raise ValueError(f"batch size must not exceed the {self.name} set of {len(self)} rows, got {n}")

    def file_rows(self, k: Tensor) -> Tensor:
        """The array rows of the set's rows ``k`` (int64, CPU): ``index[k]``, or ``k`` without an index."""
        return k if self.index is None else self.index[k]

    def gather(self, k: Tensor) -> Tensor:
        """The set's rows ``k`` ``(n,)`` as a float32 ``(n, *dims)`` tensor, in the order of ``k``:
        one forward pass over the sorted rows, never a copy of the array."""
        rows = self.file_rows(k.cpu())
        sorted_rows, order = torch.sort(rows)
        flat = sorted_rows.numpy()
        if self._fd is None:
            block = np.asarray(self.array[flat], dtype=np.float32)
        else:
            raw = np.empty((len(flat), *self.array.shape[1:]), dtype=self.array.dtype)
            for j, r in enumerate(flat.tolist()):
                if os.preadv(self._fd, [raw[j]], self._offset + r * self._row_bytes) != self._row_bytes:
                    raise ValueError(f"{self.name}: the file ends before row {r}; was it truncated?")
            block = raw.astype(np.float32, copy=False)
        out = torch.empty((len(rows), *block.shape[1:]), dtype=torch.float32)
        out[order] = torch.from_numpy(block)
        if not bool(torch.isfinite(out).all()):
            bad = int(sorted_rows[torch.nonzero(~torch.isfinite(torch.from_numpy(block)))[0, 0]])
            raise ValueError(f"{self.name} rows must be finite, got a NaN or infinity in row {bad}")
        return out

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
        n = check_positive_int("batch size", n)
        self.check_batch_size(n)
        k = draw_rows(len(self), n, generator, method=self.rows)
        x = self.gather(k).to(self.device)
        if self.cond is not None:
            return x, self.cond[k.to(self.cond.device)]
        return x


def mmap_split(
    array: np.ndarray,
    n_test: int,
    *,
    generator: torch.Generator | None = None,
    name: str = "data",
    device: torch.device | str = "cpu",
    pread: bool = False,
) -> tuple[MemmapBatches, Tensor]:
    """Split a mapped array as :func:`~flowmatch.data.split.train_test_split` splits a tensor: a
    random permutation ``pi`` of the rows drawn with ``generator``; the test part is the rows
    ``pi[:n_test]`` (read into a float32 tensor), the train part a :class:`MemmapBatches` of the
    rows ``pi[n_test:]`` (left on disk; read by ``os.preadv`` with ``pread``). One O(N)
    permutation, once; never a copy of the array."""
    n_rows = int(array.shape[0])
    n_test = check_positive_int("n_test", n_test)
    if n_test >= n_rows:
        raise ValueError(f"n_test must be < the {n_rows} rows of {name!r} (the rest is the train part), got {n_test}")
    perm_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(n_rows, generator=generator, device=perm_device).cpu()
    test = MemmapBatches(array, name=name).gather(perm[:n_test])
    return MemmapBatches(array, name=name, index=perm[n_test:], device=device, pread=pread), test
