"""A run directory: build everything a :class:`~flowmatch.runs.config.RunConfig` describes, train it,
evaluate it, plot it, and load it back, through the run's kind (:mod:`flowmatch.runs.kind`:
:class:`~flowmatch.runs.vector.VectorKind`, :class:`~flowmatch.runs.image.ImageKind`,
:class:`~flowmatch.runs.snapshot.SnapshotKind`).

Layout of a run directory::

    .flowmatch-run   marker (flowmatch.runs.directory); .flowmatch-lock: the run's lock
    config.toml      every setting (``flowmatch train --config RUN/config.toml`` repeats the run)
    checkpoints/     safetensors + JSON, atomic (see flowmatch.training.checkpoint)
    log.csv          step, loss, lr, grad_norm, elapsed_s
    tensorboard/     with log = "tensorboard": the same scalars and the figures as TensorBoard events
    metrics.json     training summary, the kind's fields and its evaluation
    samples.png, trajectories.png, loss.png

Seeds: the data split is drawn from a CPU generator seeded with ``seed + DATA_SEED_OFFSET`` and
the training loop from a generator seeded with ``seed``, so the two streams never coincide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowmatch._utils.io import write_json
from flowmatch.runs.build import build_model
from flowmatch.runs.config import RunConfig
from flowmatch.runs.data import DATA_SEED_OFFSET, RunData, build_data
from flowmatch.runs.directory import CONFIG_FILE, check_run_dir, claim_run_dir
from flowmatch.runs.kind import Report, RunKind
from flowmatch.runs.path_options import velocity_model
from flowmatch.runs.plan import kind_for, plan_run
from flowmatch.training import distributed
from flowmatch.training.checkpoint import latest_checkpoint, load_checkpoint, load_weights
from flowmatch.training.trainer import Trainer, TrainResult, resolve_device

__all__ = [
    "RunData",
    "LoadedRun",
    "build_data",
    "build_model",
    "kind_for",
    "train_run",
    "load_run",
    "evaluate_run",
    "plot_run",
    "DATA_SEED_OFFSET",
]


def train_run(
    cfg: RunConfig,
    out: str | Path | None,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    evaluate: bool = True,
    plots: bool = True,
) -> tuple[Trainer, TrainResult, Report | None]:
    """Train the run described by ``cfg`` into the directory ``out`` (None: in memory).

    Everything that can be checked is checked before the directory is touched, so a bad setting
    leaves no partial run directory behind. An existing non-empty ``out`` needs ``resume`` (continue
    from its latest checkpoint, with its own config.toml) or ``force`` (start over).

    Under torchrun (a process group is initialised) every rank calls this and trains its replica
    (:mod:`flowmatch.training.distributed`); only rank 0 writes the directory, evaluates and plots (the other
    ranks return ``report = None``).
    """
    out_path = Path(out) if out is not None else None
    check_run_dir(cfg, out_path, resume=resume, force=force)
    plan = plan_run(cfg, quiet=quiet)  # the kind, the device and the Trainer's settings, once
    kind = plan.kind
    data = kind.build_data(cfg)
    kind.check(cfg, data, evaluate=evaluate)
    # checks the batch size against the data
    trainer = kind.make_trainer(cfg, data, out_path, device=plan.device, settings=plan.trainer)
    with claim_run_dir(cfg, out_path, resume=resume, force=force):
        result = trainer.fit(resume=resume)
        if not distributed.info().is_main:  # only rank 0 evaluates and writes
            return trainer, result, None
        model = velocity_model(cfg, trainer.sampling_model)  # x1/eps/score networks sampled as velocities
        report = kind.evaluate(model, data, cfg, out_path) if evaluate else None
        if out_path is not None:
            summary: dict[str, Any] = {"train": result.summary(), **kind.summary(cfg, data)}
            if report is not None:
                summary["eval"] = report.to_dict()
            write_json(out_path / "metrics.json", summary)
            if plots:
                figures = plot_run(out_path, model, data, cfg)
                if cfg.log == "tensorboard":  # the figures beside the scalars, at the final step
                    from flowmatch.training.tensorboard import log_figures

                    log_figures(out_path, figures, result.step)
    return trainer, result, report


@dataclass
class LoadedRun:
    """A trained run: its config, data and the sampling model (EMA weights when present; a velocity
    field, through :class:`flowmatch.models.AsVelocity` for x1-, eps- or score-prediction runs)."""

    config: RunConfig
    model: nn.Module
    data: Any
    step: int
    path: Path
    device: torch.device

    @property
    def kind(self) -> RunKind:
        return kind_for(self.config)


def load_run(run_dir: str | Path, *, device: str = "auto", use_ema: bool = True) -> LoadedRun:
    """Load a run directory written by :func:`train_run`."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"run directory must exist, got {str(path)!r}")
    if not (path / CONFIG_FILE).is_file():
        raise ValueError(f"run directory {str(path)!r} has no {CONFIG_FILE}: not a flowmatch run")
    cfg = RunConfig.from_toml(path / CONFIG_FILE)
    if latest_checkpoint(path / "checkpoints") is None:
        raise ValueError(f"run directory {str(path)!r} has no checkpoint yet")
    ck = load_checkpoint(path / "checkpoints")
    if cfg.score is None and cfg.resolved_score and not any(k.startswith("score_net.") for k in ck.model):
        cfg = cfg.replace(score=False)  # an sb-cfm run trained before sb-cfm learned its score
    kind = kind_for(cfg)
    data = kind.build_data(cfg)
    model = kind.build_model(cfg, data)
    weights, file = (ck.ema, "ema.safetensors") if (use_ema and ck.ema is not None) else (ck.model, "model.safetensors")
    load_weights(model, weights, (ck.path or path / "checkpoints") / file)
    dev = resolve_device(device)
    return LoadedRun(cfg, velocity_model(cfg, model).to(dev).eval(), data, ck.step, path, dev)


def evaluate_run(
    run: LoadedRun,
    *,
    solver: str | None = None,
    steps: int | None = None,
    n: int | None = None,
    guidance: Sequence[float] | None = None,
) -> Report | None:
    """Evaluate a loaded run on its held-out test split (the first ``n`` test points).

    Image runs return an :class:`flowmatch.metrics.images.ImageEvalReport` (classifier accuracy and
    Fréchet distance at each ``guidance`` scale, default the run's ``eval_guidance``), snapshot runs
    a :class:`~flowmatch.runs.snapshot.SnapshotReport`, the others an
    :class:`~flowmatch.metrics.evaluate.EvalReport`.
    """
    return run.kind.evaluate(
        run.model, run.data, run.config, run.path, solver=solver, steps=steps, n=n, guidance=guidance
    )


def plot_run(
    out: Path, model: nn.Module, data: Any, cfg: RunConfig, *, solver: str | None = None, steps: int | None = None
) -> dict[str, Path]:
    """The kind's figures (samples.png and trajectories.png; image runs a samples.png grid, one
    row per class for class-conditional runs, at the run's ``eval_guidance``; snapshot runs the
    course's trajectories.png) and, for every kind, loss.png from log.csv."""
    from flowmatch import plots

    written = kind_for(cfg).plot(out, model, data, cfg, solver=solver, steps=steps)
    if (out / "log.csv").is_file():
        written["loss"] = plots.plot_loss_csv(out / "log.csv", out / "loss.png")
    return written
