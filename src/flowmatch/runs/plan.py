"""What a :class:`~flowmatch.runs.config.RunConfig` resolves to, once per training, before anything
is built: the run's kind, the device of this process (``cuda:LOCAL_RANK`` under torchrun) and the
Trainer's settings with ``coupling_workers`` resolved. The kinds build their data, model and
objective from the plan (each once), so no rule is applied twice."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowmatch._utils.device import resolve_device
from flowmatch.data.images import is_image_spec
from flowmatch.data.sequence_files import is_sequence_spec
from flowmatch.data.tokens import is_token_spec
from flowmatch.runs.build import trainer_config
from flowmatch.runs.config import RunConfig
from flowmatch.runs.discrete import DiscreteKind
from flowmatch.runs.distill import DistillKind
from flowmatch.runs.image import ImageKind
from flowmatch.runs.kind import RunKind
from flowmatch.runs.sequence import SequenceKind
from flowmatch.runs.snapshot import SnapshotKind
from flowmatch.runs.vector import VectorKind
from flowmatch.training import distributed
from flowmatch.training.config import TrainerConfig

__all__ = ["RunPlan", "plan_run", "kind_for"]


def kind_for(cfg: RunConfig) -> RunKind:
    """The kind of run a config describes: snapshots (``--snapshots``), sequence (``speech`` or a
    folder of .npz utterances), image (an image target) or vector."""
    if cfg.distill is not None:
        return DistillKind()
    if cfg.snapshots is not None:
        return SnapshotKind()
    if is_token_spec(cfg.target):
        return DiscreteKind()
    if is_sequence_spec(cfg.target):
        return SequenceKind()
    if is_image_spec(cfg.target):
        return ImageKind()
    return VectorKind()


@dataclass(frozen=True)
class RunPlan:
    """A config resolved: its kind, this process's device and the Trainer's settings."""

    config: RunConfig
    kind: RunKind
    device: torch.device
    trainer: TrainerConfig


def plan_run(cfg: RunConfig, *, quiet: bool = False) -> RunPlan:
    """Resolve ``cfg`` once (the device is checked here: CUDA present, MPS built)."""
    device = distributed.local_device(resolve_device(cfg.device))
    return RunPlan(cfg, kind_for(cfg), device, trainer_config(cfg, quiet))
