"""Minibatch sources for training: a callable ``(n, generator) -> (n, *dims)`` tensor.

Two kinds: :class:`TensorBatches` draws rows of a fixed training set (distinct rows within a
batch, fresh random subset each step, so no epoch position has to be checkpointed), and
:class:`StreamBatches` draws fresh samples from a distribution (e.g. Gaussian noise) each step.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from flowmatch._validate import check_positive_int

__all__ = ["TensorBatches", "StreamBatches"]


class TensorBatches:
    """Batches of ``n`` distinct rows of ``data`` (N, *dims), a fresh uniform subset per call."""

    def __init__(self, data: Tensor, *, name: str = "data"):
        if data.dim() < 2 or data.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty (N, *dims) tensor, got shape {tuple(data.shape)}")
        self.data = data
        self.name = name

    @property
    def dim(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def check_batch_size(self, n: int) -> None:
        if n > len(self):
            raise ValueError(
                f"batch size must not exceed the {self.name} set of {len(self)} rows, got {n}"
            )

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        n = check_positive_int("batch size", n)
        self.check_batch_size(n)
        idx = torch.randperm(len(self), generator=generator, device=self.data.device)[:n]
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
