"""Sequence runs (:class:`SequenceKind`): mel spectrograms and other variable-length ``(C, T)``
sequences, generated from noise with a mask, conditioned on frame-aligned tokens and a speaker
(Matcha-TTS's decoder) and, with ``infill``, on the rest of the utterance (Voicebox).

The network is a :class:`~flowmatch.models.sequence.UNet1D` (``model = auto`` or ``unet1d``;
widths ``hidden * (1, 1.5, 2, ...)`` over ``depth`` levels) or a
:class:`~flowmatch.models.sequence.SequenceTransformer` (``transformer``; width ``2 * hidden``,
``2 * depth`` layers). The objective is the method's flow matcher (FM with sigma_min as Matcha,
I-CFM, OT-CFM pairing noise with the targets' valid frames), an
:class:`~flowmatch.objectives.infill.InfillingMatcher` for ``infill``, or the L2 regression baseline
(``method = regression``). Training draws length-bucketed batches
(:class:`~flowmatch.data.sequences.SequenceBatches`) and noise shaped like each batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from flowmatch.data.batches import NoiseLike
from flowmatch.data.sequences import SequenceBatches
from flowmatch.runs.config import RunConfig
from flowmatch.runs.kind import Report, RunKind
from flowmatch.runs.sequence_data import REGRESSION, SequenceRunData, build_sequence_data
from flowmatch.training.config import TrainerConfig
from flowmatch.training.trainer import Trainer, TrainResult

__all__ = ["SequenceKind", "build_sequence_model", "build_sequence_objective", "REGRESSION"]


def _widths(hidden: int, depth: int) -> tuple[int, ...]:
    """``hidden * (1, 1.5, 2, 2.5, ...)`` rounded to multiples of 8 (attention heads divide them)."""
    return tuple(max(8, int(round(hidden * (1 + 0.5 * k) / 8)) * 8) for k in range(depth))


def build_sequence_model(cfg: RunConfig, data: SequenceRunData) -> nn.Module:
    """The backbone of a sequence run, initialised from ``cfg.seed`` (global RNG untouched)."""
    from flowmatch.models.sequence import SequenceTransformer, UNet1D

    cond: dict[str, int] = dict(
        num_tokens=data.num_tokens,
        num_speakers=data.num_speakers,
        feature_dim=data.feature_dim,
        context_channels=data.channels if cfg.infill else 0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.model == "transformer":
            return SequenceTransformer(data.channels, dim=2 * cfg.hidden, depth=2 * cfg.depth, **cond)
        return UNet1D(data.channels, channels=_widths(cfg.hidden, cfg.depth), **cond)


def build_sequence_objective(cfg: RunConfig) -> Any:
    """The training objective of a sequence run (module docstring)."""
    from flowmatch.objectives import methods
    from flowmatch.objectives.infill import InfillingMatcher
    from flowmatch.objectives.regression import RegressionObjective

    if cfg.method == REGRESSION:
        return RegressionObjective()
    fm = methods.get_flow_matcher(cfg.method, sigma=cfg.sigma)
    dropout = cfg.guidance_dropout if cfg.cond != "none" or cfg.infill else 0.0
    if cfg.infill:
        return InfillingMatcher(
            fm.path,
            fm.coupling,
            fm.time_sampler,
            name=f"{fm.name}+infill",
            cond_dropout=dropout,
            span_min=cfg.span_min,
            span_max=cfg.span_max,
        )
    fm.cond_dropout = dropout
    return fm


class SequenceKind(RunKind):
    """Noise -> padded sequences: the speech metrics (MCD, GV ratio, speaker accuracy, Fréchet
    distance, RTF; :mod:`flowmatch.runs.speech_eval`) and spectrogram pictures."""

    name = "sequence"

    def build_data(self, cfg: RunConfig) -> SequenceRunData:
        return build_sequence_data(cfg)

    def build_model(self, cfg: RunConfig, data: SequenceRunData) -> nn.Module:
        return build_sequence_model(cfg, data)

    def check(self, cfg: RunConfig, data: SequenceRunData, *, evaluate: bool) -> None:
        if cfg.batch_size > len(data.train):
            raise ValueError(
                f"batch size must not exceed the {len(data.train)} training utterances, got {cfg.batch_size}"
            )

    def make_trainer(
        self, cfg: RunConfig, data: SequenceRunData, out: Path | None, *, device: torch.device, settings: TrainerConfig
    ) -> Trainer:
        target = SequenceBatches(data.train.to(device), name="training utterances")
        return Trainer(
            self.build_model(cfg, data),
            build_sequence_objective(cfg),
            NoiseLike(),
            target,
            settings,
            run_dir=out,
            device=device,
            metadata={"method": cfg.method, "dim": data.channels, "cond": cfg.cond, "infill": cfg.infill},
        )

    def evaluate(
        self,
        model: nn.Module,
        data: SequenceRunData,
        cfg: RunConfig,
        run_dir: Path | None,
        *,
        solver: str | None = None,
        steps: int | None = None,
        n: int | None = None,
        guidance: Sequence[float] | None = None,
    ) -> Report | None:
        from flowmatch.runs.speech_eval import evaluate_sequences

        w = tuple(guidance) if guidance is not None else (cfg.eval_guidance,)
        return evaluate_sequences(model, data, cfg, run_dir, solver=solver, steps=steps, n=n, guidance=w)

    def summary(self, cfg: RunConfig, data: SequenceRunData) -> dict[str, Any]:
        out = {"method": cfg.method, "target": cfg.target, "cond": cfg.cond, "infill": cfg.infill}
        return {**out, "data": data.summary()}

    def plot(
        self,
        out: Path,
        model: nn.Module,
        data: SequenceRunData,
        cfg: RunConfig,
        *,
        solver: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Path]:
        from flowmatch.runs.speech_eval import plot_sequence_samples

        return {"samples": plot_sequence_samples(model, data, cfg, out / "samples.png", solver=solver, steps=steps)}

    def report_text(self, cfg: RunConfig, report: Report, result: TrainResult | None) -> str:
        from flowmatch.runs.speech_eval import SequenceReport, sequence_table

        return sequence_table(cast(SequenceReport, report))
