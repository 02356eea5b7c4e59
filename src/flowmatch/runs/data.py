"""The data of a vector or image run: train/test splits of its source and target, drawn once from
the run's seed (``seed + DATA_SEED_OFFSET``, so the data split and the training loop's streams never
coincide).

A ``.npy`` file that ``cfg.mmap`` maps (:func:`flowmatch.data.mmap.use_mmap`) is never read whole:
its split is :func:`~flowmatch.data.mmap.mmap_split` (the split the file would get in memory), the
test part a tensor, the train part a :class:`~flowmatch.data.mmap.MemmapBatches` in
``RunData.mapped``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flowmatch.data import DataSplit, make_split, resolve_distribution
from flowmatch.data.images import is_image_spec
from flowmatch.data.mmap import MemmapBatches, mmap_split, open_npy, use_mmap
from flowmatch.runs.config import RunConfig

__all__ = ["RunData", "build_data", "DATA_SEED_OFFSET"]

DATA_SEED_OFFSET = 1_000_003


@dataclass
class RunData:
    """Train/test splits of source and target, all (N, D) tensors on the CPU.

    Image data (:mod:`flowmatch.data.images`): the splits are (N, C, H, W), ``shape`` is (C, H, W),
    ``dim`` is C * H * W, ``labels`` holds the class labels (N,) of the target's train and test
    parts (or None) and ``classes`` their names; the source is N(0, I) noise of that shape.
    """

    source: DataSplit
    target: DataSplit
    source_is_stream: bool
    dim: int
    shape: tuple[int, ...] | None = None
    labels: DataSplit | None = None
    classes: tuple[str, ...] = ()
    #: the train parts of memory-mapped files ("source", "target"); their ``DataSplit.train`` is empty
    mapped: dict[str, MemmapBatches] = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        """Whether the samples are images (C, H, W)."""
        return self.shape is not None and len(self.shape) == 3

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def build_data(cfg: RunConfig) -> RunData:
    """Resolve the source and target specs and draw their splits (deterministic in cfg.seed)."""
    if is_image_spec(cfg.target):
        return _build_image_data(cfg)
    if cfg.cond == "label":
        raise ValueError(
            f"cond 'label' needs labelled image data (digits, mnist, cifar10, a folder with "
            f"class subfolders or an .npz with labels), got target {cfg.target!r}"
        )
    mmap = cfg.mmap
    target = open_npy(cfg.target) if use_mmap(cfg.target, mmap) else resolve_distribution(cfg.target)
    t_dim = target.dim if not isinstance(target, np.ndarray) else int(target.shape[1])
    mapped_source = cfg.source != "gaussian" and use_mmap(cfg.source, mmap)
    source = open_npy(cfg.source) if mapped_source else resolve_distribution(cfg.source, dim=_gauss(cfg, t_dim))
    s_dim = source.dim if not isinstance(source, np.ndarray) else int(source.shape[1])
    if s_dim != t_dim:
        raise ValueError(
            f"source and target must have the same dimension, got {s_dim} ({cfg.source}) and {t_dim} ({cfg.target})"
        )
    g = torch.Generator().manual_seed(cfg.seed + DATA_SEED_OFFSET)
    kw: dict[str, Any] = dict(n_train=cfg.n_train, n_test=cfg.n_test, generator=g, protocol=cfg.test_split)
    mapped: dict[str, MemmapBatches] = {}
    splits = []
    for side, dist, spec in (("source", source, cfg.source), ("target", target, cfg.target)):
        if isinstance(dist, np.ndarray):  # the same draws as make_split of the file read whole
            mapped[side], test = mmap_split(
                dist, cfg.n_test, generator=g, name=f"{side} training ({spec})", pread=mmap == "pread"
            )
            splits.append(DataSplit(train=test[:0], test=test))
        else:
            splits.append(make_split(dist, **kw))
    stream = not isinstance(source, np.ndarray) and source.is_builtin and cfg.source == "gaussian"
    return RunData(splits[0], splits[1], stream, t_dim, mapped=mapped)


def _gauss(cfg: RunConfig, dim: int) -> int | None:
    """The dimension a Gaussian source takes from the target (None: the source is not gaussian)."""
    return dim if cfg.source == "gaussian" else None


def _build_image_data(cfg: RunConfig) -> RunData:
    """Image target: train/test images (and labels), N(0, I) noise of the same shape as source."""
    from flowmatch.data.images import image_split

    if cfg.source != "gaussian":
        raise ValueError(f"image targets flow from noise and need --source gaussian, got {cfg.source!r}")
    g = torch.Generator().manual_seed(cfg.seed + DATA_SEED_OFFSET)
    sp = image_split(cfg.target, n_test=cfg.n_test, generator=g)
    shape = tuple(int(s) for s in sp.train.shape[1:])
    if cfg.cond == "label" and sp.train_labels is None:
        raise ValueError(
            f"cond 'label' needs labelled images (class subfolders, or an .npz with labels), "
            f"got {cfg.target!r} without labels"
        )
    noise = DataSplit(train=torch.empty((0, *shape)), test=torch.randn((sp.test.shape[0], *shape), generator=g))
    labels = (
        DataSplit(sp.train_labels, sp.test_labels)
        if sp.train_labels is not None and sp.test_labels is not None
        else None
    )
    return RunData(noise, DataSplit(sp.train, sp.test), True, math.prod(shape), shape, labels, sp.classes)
