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
from flowmatch.runs.distill import DistillKind, ImageDistillKind
from flowmatch.runs.image import ImageKind
from flowmatch.runs.kind import RunKind
from flowmatch.runs.manifold import ManifoldKind
from flowmatch.runs.sequence import SequenceKind
from flowmatch.runs.snapshot import SnapshotKind
from flowmatch.runs.vector import VectorKind
from flowmatch.training import distributed
from flowmatch.training.config import TrainerConfig
from flowmatch.training.tensorboard import check_tensorboard

__all__ = ["RunPlan", "plan_run", "kind_for"]


def kind_for(cfg: RunConfig) -> RunKind:
    """The kind of run a config describes: a distilled student (``--distill``), snapshots
    (``--snapshots``), manifold (``--manifold``), tokens (``digits-tokens``, ``brackets``), sequence
    (``speech`` or a folder of .npz utterances), image (an image target) or vector."""
    if cfg.distill is not None:
        return ImageDistillKind() if is_image_spec(cfg.target) else DistillKind()
    if cfg.snapshots is not None:
        return SnapshotKind()
    if cfg.manifold != "none":
        return ManifoldKind()
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
    """Resolve ``cfg`` once (the device is checked here: CUDA present, MPS built; and, for
    ``log = "tensorboard"``, that the tensorboard package is installed: training is refused before
    its run directory is written, while ``eval`` of such a run needs no tensorboard)."""
    if cfg.log == "tensorboard":
        check_tensorboard()
    device = distributed.local_device(resolve_device(cfg.device))
    return RunPlan(cfg, kind_for(cfg), device, trainer_config(cfg, quiet))
