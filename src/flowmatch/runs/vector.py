"""Vector runs (``(N, D)`` data: the 2D toys, data files): the base of the image kind too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.data.mmap import MemmapBatches
from flowmatch.metrics.evaluate import EvalReport, check_evaluable, evaluate_model
from flowmatch.metrics.report import eval_row, format_table
from flowmatch.runs.build import build_matcher, build_model
from flowmatch.runs.config import RunConfig
from flowmatch.runs.data import RunData, build_data
from flowmatch.runs.kind import Report, RunKind
from flowmatch.training.config import TrainerConfig
from flowmatch.training.trainer import Trainer, TrainResult

__all__ = ["VectorKind"]


class VectorKind(RunKind):
    """Source -> target of ``(N, D)`` samples: W2 / NPE / NFE evaluation, samples.png and
    trajectories.png."""

    name = "vector"

    def build_data(self, cfg: RunConfig) -> RunData:
        return build_data(cfg)

    def check(self, cfg: RunConfig, data: RunData, *, evaluate: bool) -> None:
        if evaluate:  # what the final evaluation needs, before any training is spent
            check_evaluable(len(data.source.test), len(data.target.test))

    def make_trainer(
        self, cfg: RunConfig, data: RunData, out: Path | None, *, device: torch.device, settings: TrainerConfig
    ) -> Trainer:
        if data.source_is_stream:
            dims = data.shape if data.shape is not None else (data.dim,)
            source: StreamBatches | TensorBatches | MemmapBatches = StreamBatches(
                lambda n, generator=None: torch.randn((n, *dims), generator=generator, device=device),
                device=device,
                name="source",
            )
        elif "source" in data.mapped:  # a memory-mapped .npy file (--mmap)
            source = data.mapped["source"].to(device)
        else:
            source = TensorBatches(data.source.train.to(device), name="source training")
        labels = data.labels.train.to(device) if (cfg.cond == "label" and data.labels is not None) else None
        target: TensorBatches | MemmapBatches = (
            data.mapped["target"].to(device)
            if "target" in data.mapped
            else TensorBatches(data.target.train.to(device), name="target training", cond=labels)
        )
        return Trainer(
            build_model(cfg, data.dim, shape=data.shape, num_classes=data.num_classes),
            build_matcher(cfg),
            source,
            target,
            settings,
            run_dir=out,
            device=device,
            metadata={"method": cfg.method, "dim": data.dim, "cond": cfg.cond, "score": cfg.resolved_score},
        )

    def evaluate(
        self,
        model: nn.Module,
        data: RunData,
        cfg: RunConfig,
        run_dir: Path | None,
        *,
        solver: str | None = None,
        steps: int | None = None,
        n: int | None = None,
        guidance: Sequence[float] | None = None,
    ) -> Report | None:
        device = next(model.parameters()).device
        return evaluate_model(
            model,
            data.source.test[:n].to(device),
            data.target.test[:n].to(device),
            solver=solver or cfg.eval_solver,
            steps=steps or cfg.eval_steps,
        )

    def summary(self, cfg: RunConfig, data: RunData) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": cfg.method,
            "source": cfg.source,
            "target": cfg.target,
            "score": cfg.resolved_score,
        }
        if cfg.cond != "none":
            out["cond"] = cfg.cond
        return out

    def plot(
        self,
        out: Path,
        model: nn.Module,
        data: RunData,
        cfg: RunConfig,
        *,
        solver: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Path]:
        from flowmatch import plots
        from flowmatch.sampling.average import sample_average
        from flowmatch.sampling.ode import sample

        x0 = data.source.test.to(next(model.parameters()).device)
        solver, steps = solver or cfg.eval_solver, steps or cfg.eval_steps
        if solver == "average":  # meanflow runs: the jumps of the average velocity
            res = sample_average(model, x0, steps=steps, return_trajectory=True)
        else:
            res = sample(model, x0, solver=solver, steps=steps, return_trajectory=True)
        title = f"{cfg.method}: {cfg.source} -> {cfg.target}"
        written = {
            "samples": plots.plot_samples(
                res.x.cpu(), data.target.test, out / "samples.png", source=data.source.test, title=title
            ),
            "trajectories": plots.plot_trajectories(
                res.require_trajectory().cpu(), out / "trajectories.png", target=data.target.test, title=title
            ),
        }
        return written

    def report_text(self, cfg: RunConfig, report: Report, result: TrainResult | None) -> str:
        return format_table(
            [eval_row(cfg.method, cast(EvalReport, report), None if result is None else result.elapsed_s)]
        )
