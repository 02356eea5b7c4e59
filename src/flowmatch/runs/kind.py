"""One interface for every kind of run (vector, image, snapshot, sequence): how it builds its data,
network and Trainer, checks what can be checked before training, evaluates, summarises,
plots and reports. :mod:`flowmatch.runs.run` drives a run through it and holds what every kind
shares (the run directory, rank-0 writes, metrics.json, loss.png), so no caller branches on the
kind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from flowmatch.runs.config import RunConfig
from flowmatch.training.config import TrainerConfig
from flowmatch.training.trainer import Trainer, TrainResult

__all__ = ["Report", "RunKind"]


class Report(Protocol):
    """What a kind's evaluation returns: its JSON form goes into metrics.json under ``eval``."""

    def to_dict(self) -> dict[str, Any]: ...


class RunKind:
    """The base of the run kinds; every method but :meth:`check` must be provided."""

    #: the name written into metrics.json (``kind``)
    name = "run"

    def build_data(self, cfg: RunConfig) -> Any:
        """The run's data, deterministic in ``cfg.seed``."""
        raise NotImplementedError

    def build_model(self, cfg: RunConfig, data: Any) -> nn.Module:
        """The run's network, initialised from ``cfg.seed`` (what :func:`flowmatch.runs.run.load_run`
        loads the weights into); by default :func:`flowmatch.runs.build.build_model`."""
        from flowmatch.runs.build import build_model

        return build_model(cfg, data.dim, shape=getattr(data, "shape", None), num_classes=data.num_classes)

    def check(self, cfg: RunConfig, data: Any, *, evaluate: bool) -> None:
        """What can be checked before any training is spent (beyond the config's own rules)."""

    def make_trainer(
        self, cfg: RunConfig, data: Any, out: Path | None, *, device: torch.device, settings: TrainerConfig
    ) -> Trainer:
        """The run's Trainer on ``device`` with ``settings``, both resolved once by
        :func:`flowmatch.runs.plan.plan_run`."""
        raise NotImplementedError

    def evaluate(
        self,
        model: nn.Module,
        data: Any,
        cfg: RunConfig,
        run_dir: Path | None,
        *,
        solver: str | None = None,
        steps: int | None = None,
        n: int | None = None,
        guidance: Sequence[float] | None = None,
    ) -> Report | None:
        """The held-out evaluation (None where the kind has none for this run)."""
        raise NotImplementedError

    def summary(self, cfg: RunConfig, data: Any) -> dict[str, Any]:
        """The kind's fields of metrics.json besides ``train`` and ``eval``."""
        raise NotImplementedError

    def plot(
        self,
        out: Path,
        model: nn.Module,
        data: Any,
        cfg: RunConfig,
        *,
        solver: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Path]:
        """The kind's figures in ``out`` (loss.png is drawn for every kind by the caller)."""
        raise NotImplementedError

    def report_text(self, cfg: RunConfig, report: Report, result: TrainResult | None) -> str:
        """What ``flowmatch train`` prints of the evaluation."""
        raise NotImplementedError
