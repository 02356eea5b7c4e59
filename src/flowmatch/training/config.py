"""What a training is asked to do (:class:`TrainerConfig`, checked once on construction; the
objective it trains, :class:`TrainingObjective`) and what it reports (:class:`TrainResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

from flowmatch._utils.validate import (
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from flowmatch.training.log import LOG_BACKENDS
from flowmatch.training.optim import LR_SCHEDULES

__all__ = ["TrainerConfig", "TrainResult", "TrainingObjective"]


@dataclass
class TrainerConfig:
    """Optimisation and bookkeeping settings of :class:`Trainer`."""

    steps: int = 20_000
    batch_size: int = 512  # the global batch: split evenly over data-parallel ranks
    lr: float = 1e-3
    weight_decay: float = 1e-5
    grad_clip: float = 0.0  # 0 disables clipping
    ema_decay: float = 0.0  # 0 disables the EMA
    #: the EMA's decay at step s is min(ema_decay, (1 + s) / (10 + s)): see optim.ema_decay_at
    ema_warmup: bool = True
    lr_schedule: str = "constant"  # or "cosine": lr * (1 + cos(pi * step / steps)) / 2
    seed: int = 0
    log_every: int = 50
    #: "csv": log.csv; "tensorboard": log.csv and TensorBoard scalars beside it (training.tensorboard)
    log: str = "csv"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    quiet: bool = False
    #: threads that compute the pairings of the next steps while a step trains (0: inline)
    coupling_workers: int = 0
    #: GPU speed options (CUDA only; ignored with a warning elsewhere): see flowmatch.training.speed
    bf16: bool = False
    compile: bool = False
    tf32: bool = False
    #: steps whose loss or gradient is not finite that are skipped (not applied) before training
    #: stops with :class:`~flowmatch.training.trainer.TrainingDiverged` (0: stop at the first)
    max_bad_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
            setattr(self, name, check_positive_int(name, getattr(self, name)))
        for name in ("coupling_workers", "max_bad_steps"):
            setattr(self, name, check_nonnegative_int(name, getattr(self, name)))
        self.lr = check_positive_float("lr", self.lr)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("log", self.log, LOG_BACKENDS)  # tensorboard installed: checked by the Trainer
        self.weight_decay = check_nonnegative_float("weight_decay", self.weight_decay)
        self.grad_clip = check_nonnegative_float("grad_clip", self.grad_clip)
        self.ema_decay = check_probability("ema_decay", self.ema_decay)
        if self.ema_decay == 1.0:
            raise ValueError("ema_decay must be < 1 (1 would freeze the average), got 1.0")
        self.seed = check_nonnegative_int("seed", self.seed)
        for name in ("quiet", "bf16", "compile", "tf32", "ema_warmup"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")


@dataclass
class TrainResult:
    """Summary of :meth:`Trainer.fit`."""

    step: int
    final_loss: float
    elapsed_s: float
    steps_per_s: float
    resumed_from: int | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """The figures a run's metrics.json keeps under ``train``."""
        return {
            "steps": self.step,
            "final_loss": self.final_loss,
            "train_time_s": self.elapsed_s,
            "steps_per_s": self.steps_per_s,
        }


class TrainingObjective(Protocol):
    """What the Trainer trains with: a ``loss(model, x0, x1, [cond], *, generator)`` (FlowMatcher,
    ScoreFlowMatcher, CNFObjective, SnapshotMatcher); ``prepare_pairing`` and ``use_pairing``, where
    present, let the pairings be solved ahead (:mod:`flowmatch.training.prefetch`)."""

    @property
    def loss(self) -> Callable[..., Tensor]: ...
