"""Data: built-in toy distributions, user data files, and train/test splits; variable-length
sequences (:mod:`~flowmatch.data.sequences`, :mod:`~flowmatch.data.masks`,
:mod:`~flowmatch.data.seqcond`, :mod:`~flowmatch.data.sequence_files`) and the built-in speech
corpus (:mod:`~flowmatch.data.speech`).

The public entry is :func:`resolve_distribution`, which turns a spec (a built-in name such as
``"moons"`` or a path such as ``"cells.npz:pca"``) into a :class:`Distribution`, and
:func:`make_split`, which draws the train and test samples of one distribution the way the
paper's code does (Tong et al. TMLR 2024: one large draw split at random).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.data.files import SUPPORTED_EXTENSIONS, load_array, parse_file_spec
from flowmatch.data.masks import lengths_to_mask
from flowmatch.data.seqcond import SequenceCondition
from flowmatch.data.sequence_files import load_sequence_folder, save_sequence_folder
from flowmatch.data.sequences import SequenceBatches, SequenceSet
from flowmatch.data.split import DataSplit, train_test_split
from flowmatch.data.toy2d import TOY_DATASETS, check_toy_dim, sample_toy, toy_names

__all__ = [
    "Distribution",
    "resolve_distribution",
    "make_split",
    "DataSplit",
    "train_test_split",
    "load_array",
    "sample_toy",
    "toy_names",
    "TOY_DATASETS",
    "SequenceSet",
    "SequenceBatches",
    "SequenceCondition",
    "lengths_to_mask",
    "load_sequence_folder",
    "save_sequence_folder",
]


class Distribution:
    """A distribution to sample from: a built-in toy (infinite) or the rows of a file (finite).

    Build one with :func:`resolve_distribution`, :meth:`from_toy` or :meth:`from_tensor`.

    Attributes:
        name: the built-in name, or the spec of the file (path, with ``:key`` if given).
        dim: the dimension ``D`` of a point.
        is_builtin: whether it is a built-in toy distribution.
        finite: ``False`` for built-ins (fresh draws), ``True`` for files (a fixed set of rows).
        size: the number of rows ``N`` of a file; ``None`` for built-ins.
        data: the ``(N, D)`` rows of a file; ``None`` for built-ins.
    """

    __slots__ = ("_name", "_dim", "_data")

    def __init__(self, name: str, dim: int, data: Tensor | None) -> None:
        """Internal: use :func:`resolve_distribution`, :meth:`from_toy` or :meth:`from_tensor`."""
        self._name = name
        self._dim = dim
        self._data = data

    @classmethod
    def from_toy(cls, name: str, *, dim: int = 2) -> Distribution:
        """The built-in toy ``name`` (see :func:`toy_names`); ``dim != 2`` only for ``gaussian``."""
        if name not in TOY_DATASETS:
            raise ValueError(f"unknown built-in dataset {name!r}; choose one of: {', '.join(toy_names())}")
        return cls(name, check_toy_dim(name, dim), None)

    @classmethod
    def from_tensor(cls, data: Tensor, *, name: str = "tensor") -> Distribution:
        """The empirical distribution of the rows of ``data`` ``(N, D)`` (kept as float32 CPU)."""
        if not isinstance(data, Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
        if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
            raise ValueError(f"data must have shape (N, D) with N, D >= 1, got {tuple(data.shape)}")
        return cls(name, int(data.shape[1]), data.detach().to("cpu", torch.float32))

    @property
    def name(self) -> str:
        """The built-in name or the file spec."""
        return self._name

    @property
    def dim(self) -> int:
        """Dimension ``D`` of one point."""
        return self._dim

    @property
    def is_builtin(self) -> bool:
        """Whether this is a built-in toy distribution."""
        return self._data is None

    @property
    def finite(self) -> bool:
        """``True`` for a fixed set of rows (file), ``False`` for a built-in (fresh draws)."""
        return self._data is not None

    @property
    def size(self) -> int | None:
        """Number of rows ``N`` of a file; ``None`` for a built-in."""
        return None if self._data is None else int(self._data.shape[0])

    @property
    def data(self) -> Tensor | None:
        """The ``(N, D)`` rows of a file; ``None`` for a built-in."""
        return self._data

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` points, shape ``(n, dim)``, float32.

        Built-in: a fresh draw (:func:`sample_toy`). File: ``n`` distinct rows chosen uniformly
        without replacement (the first ``n`` entries of a random permutation), so ``n <= N``.
        """
        n = check_positive_int("n", n)
        if self._data is None:
            return sample_toy(self._name, n, dim=self._dim, generator=generator)
        n_rows = int(self._data.shape[0])
        if n > n_rows:
            raise ValueError(
                f"cannot draw n={n} rows without replacement from a file of {n_rows} rows ({self._name!r})"
            )
        return self._data[_permutation(n_rows, generator)[:n]]

    def __repr__(self) -> str:
        kind = "builtin" if self._data is None else f"file, N={self.size}"
        return f"Distribution({self._name!r}, dim={self._dim}, {kind})"


def _permutation(n: int, generator: torch.Generator | None) -> Tensor:
    """A uniformly random permutation of ``range(n)`` as CPU indices."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=device).cpu()


def _is_file_spec(spec: str) -> bool:
    """Whether ``spec`` should be read as a file: a supported extension, or an existing path."""
    path = parse_file_spec(spec).path
    return path.suffix.lower() in SUPPORTED_EXTENSIONS or path.exists()


def resolve_distribution(spec: str | os.PathLike[str], *, dim: int | None = None) -> Distribution:
    """Turn ``spec`` (a built-in name or a data file path) into a :class:`Distribution`.

    ``spec`` is one of :func:`toy_names` or a path to a ``.npy``, ``.npz``, ``.csv``, ``.pt`` or
    ``.pth`` file (``"file.npz:key"`` chooses an array; see :func:`load_array`). ``dim`` only
    applies to ``gaussian`` (so a Gaussian source can match a ``D``-dimensional file target);
    for another built-in it must be ``None`` or 2, for a file ``None`` or the file's ``D``.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"dataset spec must be a name or a path, got {type(spec).__name__}")
    text = os.fspath(spec)
    if text in TOY_DATASETS:
        return Distribution.from_toy(text, dim=2 if dim is None else dim)
    if not _is_file_spec(text):
        raise ValueError(
            f"unknown dataset {text!r}; choose a built-in ({', '.join(toy_names())}) "
            f"or a path to a .npy/.npz/.csv/.pt file"
        )
    dist = Distribution.from_tensor(load_array(text), name=text)
    if dim is not None and dim != dist.dim:
        raise ValueError(f"dim only applies to 'gaussian'; file {text!r} has D={dist.dim} columns, got dim={dim!r}")
    return dist


SPLIT_PROTOCOLS = ("paper", "fresh")


def make_split(
    dist: Distribution, *, n_train: int, n_test: int, generator: torch.Generator | None = None, protocol: str = "paper"
) -> DataSplit:
    """Train and test samples of ``dist``.

    Built-in distributions, by ``protocol``:

    - ``"paper"``: one draw of ``n_train + n_test`` points split at random, as the code of Tong
      et al. (TMLR 2024) does.
    - ``"fresh"``: the test set is its own draw of ``n_test`` points, then the training set a draw
      of ``n_train``. For generators that place points evenly along a curve (moons, circles), a
      fresh draw is stratified: its two components hold exactly n/2 points each, whereas a random
      subset of a large draw holds a binomial share, which alone moves W2 by 0.1 to 0.2 at
      n = 2000 on moons (REFERENCES.md, "Sampling floor").

    Files: the rows are shuffled, the test part is ``n_test`` rows (``n_test < N``) and the train
    part is all the rest; ``n_train`` is then ignored (it is still checked to be a positive int).
    """
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a Distribution, got {type(dist).__name__}")
    n_train = check_positive_int("n_train", n_train)
    n_test = check_positive_int("n_test", n_test)
    if protocol not in SPLIT_PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; choose one of: {', '.join(SPLIT_PROTOCOLS)}")
    data = dist.data
    if data is None and protocol == "fresh":
        test = dist.sample(n_test, generator=generator)
        return DataSplit(train=dist.sample(n_train, generator=generator), test=test)
    if data is None:  # built-in, paper protocol: one large draw, split at random
        x = dist.sample(n_train + n_test, generator=generator)
        return train_test_split(x, test_size=n_test, generator=generator)
    n_rows = int(data.shape[0])
    if n_test >= n_rows:
        raise ValueError(
            f"n_test must be < the {n_rows} rows of file {dist.name!r} (the rest is the train "
            f"part), got n_test={n_test}"
        )
    return train_test_split(data, test_size=n_test, generator=generator)
