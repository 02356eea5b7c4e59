"""The Trainer's batch sources: what it accepts as source and target, and the positions of the
stateful ones (a map-style Dataset's sampler, :class:`~flowmatch.data.datasets.DatasetBatches`)
that its checkpoints store beside the generator states.

A source with ``sampler_state() -> Tensor`` and ``load_sampler_state(Tensor)`` is stateful: its
position is checkpointed under ``rng["source_sampler"]`` / ``rng["target_sampler"]`` (the int64
state viewed as bytes, so the data-parallel gather of generator states carries it too) and put
back on resume. A source with ``resumable = False`` (an iterator, e.g.
:class:`~flowmatch.data.datasets.LoaderBatches`) has no position to store: resuming warns.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from flowmatch.data.datasets import as_batches

__all__ = ["SamplerStates", "NotResumableWarning", "batch_sources"]


class NotResumableWarning(UserWarning):
    """A run resumes with a batch source whose position a checkpoint cannot hold (an iterator)."""


def batch_sources(source: Any, target: Any, device: torch.device, batch_size: int) -> tuple[Any, Any]:
    """``source`` and ``target`` as batch sources (:func:`flowmatch.data.datasets.as_batches`):
    tensors, NumPy or memory-mapped arrays, Datasets and DataLoaders are wrapped, callables kept;
    each one's ``check_batch_size(batch_size)`` (where it has one) rejects a batch it cannot draw."""
    out = as_batches(source, device=device, name="source"), as_batches(target, device=device, name="target")
    for batches in out:
        check = getattr(batches, "check_batch_size", None)
        if check is not None:
            check(batch_size)
    return out


class SamplerStates:
    """The positions of a Trainer's stateful batch sources, as one ``get_state``/``set_state``
    pair (the :class:`~flowmatch.training.prefetch.BatchPrefetcher` records it before each draw)."""

    def __init__(self, **sources: Any):
        self.all = sources
        self.stateful = {k: b for k, b in sources.items() if hasattr(b, "sampler_state")}

    def states(self, generator: torch.Generator) -> dict[str, Tensor]:
        """What a checkpoint stores of the draws: the generator's state and :meth:`get_state`."""
        return {"generator": generator.get_state(), **self.get_state()}

    def get_state(self) -> dict[str, Tensor]:
        """``{"<name>_sampler": state bytes}`` of every stateful source (empty when none is)."""
        return {f"{k}_sampler": b.sampler_state().to(torch.int64).view(torch.uint8) for k, b in self.stateful.items()}

    def set_state(self, rng: dict[str, Tensor], *, resuming: bool = False) -> None:
        """Put every stateful source back at its position in ``rng`` (a checkpoint's or one of
        :meth:`get_state`); with ``resuming``, warn for each source that cannot resume exactly."""
        for k, b in self.stateful.items():
            key = f"{k}_sampler"
            if key not in rng:
                raise ValueError(
                    f"the checkpoint must hold the {k} sampler's position (it was written with another kind of {k}), "
                    f"got only {sorted(rng)}"
                )
            b.load_sampler_state(rng[key].to(torch.uint8).contiguous().view(torch.int64))
        if resuming:
            for k, b in self.all.items():
                if getattr(b, "resumable", True) is False:
                    warnings.warn(
                        f"the {k} ({type(b).__name__}) is an iterator whose position is not checkpointed: the "
                        f"resumed run draws other batches than an uninterrupted run would (wrap a map-style "
                        f"Dataset in DatasetBatches for an exact resume)",
                        NotResumableWarning,
                        stacklevel=3,
                    )
