"""Run directories of snapshot (trajectory inference) runs: ``flowmatch train --snapshots ...``.

A snapshot run trains one velocity field across the consecutive time points of a time course
(:mod:`flowmatch.trajectory`), optionally without the intermediate time point ``holdout``, and
evaluates it by pushing populations between time points (:mod:`flowmatch.trajectory.inference`):
with a holdout, the W1 between the population of ``holdout - 1`` pushed to ``t_holdout`` and the
held-out population (Tong et al. TMLR 2024, Table 4); without, the same W1 at every time point.
The directory has the layout of :mod:`flowmatch.runs.run`; ``metrics.json`` holds the evaluation and
``trajectories.png`` the first population pushed through the whole course, colored by time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from flowmatch.data.snapshots import Snapshots, load_snapshots
from flowmatch.runs.build import build_model
from flowmatch.runs.config import RunConfig
from flowmatch.runs.kind import Report, RunKind
from flowmatch.training.config import TrainerConfig
from flowmatch.training.trainer import Trainer, TrainResult
from flowmatch.trajectory import SnapshotBatches, SnapshotMatcher
from flowmatch.trajectory.inference import HoldoutResult, holdout_w1, push, step_w1

__all__ = [
    "SnapshotRunData",
    "SnapshotReport",
    "build_snapshot_data",
    "evaluate_snapshot_model",
    "SnapshotKind",
    "plot_snapshot_run",
    "DATA_SEED",
]

#: Seed of built-in courses (the data stays the same whatever the run's training seed).
DATA_SEED = 0
#: Seed of the SDE noise of the evaluation.
EVAL_SEED = 0


@dataclass
class SnapshotRunData:
    """The full course, the training course (without the holdout) and the holdout index (or None)."""

    full: Snapshots
    train: Snapshots
    holdout: int | None
    is_image: bool = False
    shape: tuple[int, ...] | None = None
    num_classes: int = 0
    classes: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return self.full.dim


@dataclass
class SnapshotReport:
    """Evaluation of a snapshot run: the held-out W1 (ODE, and SDE for models with a score) and the
    W1 at every training time point (each pushed from the previous one)."""

    holdout: HoldoutResult | None
    holdout_sde: HoldoutResult | None
    fit: list[HoldoutResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "snapshots"}
        if self.holdout is not None:
            out["holdout"] = self.holdout.index
            out["holdout_time"] = self.holdout.time
            out["holdout_w1"] = self.holdout.w1
            out["holdout_w1_sde"] = None if self.holdout_sde is None else self.holdout_sde.w1
            out["holdout_detail"] = [r.to_dict() for r in (self.holdout, self.holdout_sde) if r is not None]
        out["fit_w1"] = [r.to_dict() for r in self.fit]
        return out

    def summary(self) -> str:
        lines = []
        for r in (self.holdout, self.holdout_sde):
            if r is not None:
                lines.append(
                    f"held-out time point {r.index} (t = {r.time:g}): W1 = {r.w1:.4f} "
                    f"({r.sampler}; {r.n_pushed} pushed vs {r.n_observed} observed)"
                )
        if self.fit:
            fits = ", ".join(f"t={r.time:g}: {r.w1:.4f}" for r in self.fit)
            lines.append(f"W1 at the training time points, each pushed from the previous one: {fits}")
        return "\n".join(lines)


def build_snapshot_data(cfg: RunConfig) -> SnapshotRunData:
    """Load the run's course and check its holdout (an intermediate time point)."""
    if cfg.snapshots is None:
        raise ValueError("a snapshot run needs snapshots (--snapshots), got none")
    full = load_snapshots(cfg.snapshots, seed=DATA_SEED, time_key=cfg.time_key, embedding=cfg.embedding)
    if cfg.holdout is None:
        return SnapshotRunData(full, full, None)
    k = full.check_index(cfg.holdout, intermediate=True, what="holdout")
    return SnapshotRunData(full, full.without(k), k)


def _matcher(cfg: RunConfig, data: SnapshotRunData) -> SnapshotMatcher:
    return SnapshotMatcher.from_method(cfg.method, data.train.times, sigma=cfg.sigma, score=cfg.resolved_score)


def make_snapshot_trainer(
    cfg: RunConfig, data: SnapshotRunData, out: Path | None, *, device: torch.device, settings: TrainerConfig
) -> Trainer:
    return Trainer(
        build_model(cfg, data.dim),
        _matcher(cfg, data),
        SnapshotBatches(data.train, "source", device=device),
        SnapshotBatches(data.train, "target", device=device),
        settings,
        run_dir=out,
        device=device,
        metadata={
            "method": cfg.method,
            "dim": data.dim,
            "snapshots": cfg.snapshots,
            "holdout": cfg.holdout,
            "score": cfg.resolved_score,
        },
    )


def evaluate_snapshot_model(
    model: nn.Module,
    data: SnapshotRunData,
    cfg: RunConfig,
    *,
    solver: str | None = None,
    steps: int | None = None,
    n: int | None = None,
) -> SnapshotReport:
    """Held-out W1 (ODE; also SDE with the run's sigma when the model has a score) and the fit W1."""
    kw: dict[str, Any] = dict(steps=steps or cfg.eval_steps, max_points=n)
    solver = solver or cfg.eval_solver
    hold = sde = None
    if data.holdout is not None:
        hold = holdout_w1(model, data.full, data.holdout, solver=solver, **kw)
        if cfg.resolved_score:
            sde = holdout_w1(
                model,
                data.full,
                data.holdout,
                sigma=cfg.resolved_sigma,
                generator=torch.Generator(device=_device(model)).manual_seed(EVAL_SEED),
                **kw,
            )
    return SnapshotReport(hold, sde, step_w1(model, data.train, solver=solver, **kw))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def plot_snapshot_run(
    out: Path,
    model: nn.Module,
    data: SnapshotRunData,
    cfg: RunConfig,
    *,
    solver: str | None = None,
    steps: int | None = None,
) -> dict[str, Path]:
    """trajectories.png (the first population pushed through the course, over all snapshots colored by
    time, the held-out one marked)."""
    from flowmatch.plots.snapshots import plot_snapshot_trajectories

    full = data.full
    x0 = full.populations[0][:300].to(_device(model))
    with torch.no_grad():
        res = push(
            model,
            x0,
            float(full.times[0]),
            float(full.times[-1]),
            knots=full.times.tolist(),
            steps=steps or cfg.eval_steps,
            solver=solver or cfg.eval_solver,
            return_trajectory=True,
        )
    held = f", time point {data.holdout} held out" if data.holdout is not None else ""
    written = {
        "trajectories": plot_snapshot_trajectories(
            res.require_trajectory().cpu(),
            res.times.cpu(),
            full,
            out / "trajectories.png",
            held_out=data.holdout,
            title=f"{cfg.method} on {full.name}{held}",
        )
    }
    return written


class SnapshotKind(RunKind):
    """Trajectory inference across the time points of a course (``--snapshots``): held-out W1,
    trajectories.png of the course."""

    name = "snapshots"

    def build_data(self, cfg: RunConfig) -> SnapshotRunData:
        return build_snapshot_data(cfg)

    def make_trainer(
        self, cfg: RunConfig, data: SnapshotRunData, out: Path | None, *, device: torch.device, settings: TrainerConfig
    ) -> Trainer:
        return make_snapshot_trainer(cfg, data, out, device=device, settings=settings)

    def evaluate(
        self,
        model: nn.Module,
        data: SnapshotRunData,
        cfg: RunConfig,
        run_dir: Path | None,
        *,
        solver: str | None = None,
        steps: int | None = None,
        n: int | None = None,
        guidance: Sequence[float] | None = None,
    ) -> SnapshotReport:
        return evaluate_snapshot_model(model, data, cfg, solver=solver, steps=steps, n=n)

    def summary(self, cfg: RunConfig, data: SnapshotRunData) -> dict[str, Any]:
        return {
            "method": cfg.method,
            "snapshots": cfg.snapshots,
            "holdout": cfg.holdout,
            "time_key": cfg.time_key,
            "embedding": cfg.embedding,
            "times": data.full.times.tolist(),
            "score": cfg.resolved_score,
        }

    def plot(
        self,
        out: Path,
        model: nn.Module,
        data: SnapshotRunData,
        cfg: RunConfig,
        *,
        solver: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Path]:
        return plot_snapshot_run(out, model, data, cfg, solver=solver, steps=steps)

    def report_text(self, cfg: RunConfig, report: Report, result: TrainResult | None) -> str:
        return cast(SnapshotReport, report).summary()
