"""Distilled runs (``flowmatch train --distill TEACHER_RUN --distill-steps K``): a K-step Euler
student trained on a trained run's own (x0, ODE(x0)) pairs (:mod:`flowmatch.training.distill`).

The student is a run of the teacher's kind (vector, or image: :class:`ImageDistillKind`) with the
teacher's data: the CLI starts from the teacher's
config.toml (flags given override it), and :func:`check_distill` refuses data settings that differ
from the teacher's (the pairs must come from the same source). The pairs are the teacher's dopri5
trajectories (atol = rtol = 1e-5; 1e-3 for images, :data:`IMAGE_PAIR_TOL`) from the source's training rows, or, for a N(0, I) source, from as
many noise draws as the target has training rows (a generator seeded with ``seed``): the same
pairs on every call, so a resumed student trains on the pairs it started with. The student's
network is a fresh one of the run's architecture; it is evaluated and plotted with Euler in
``eval_steps`` steps (the CLI sets ``eval_solver = euler``, ``eval_steps = K``).

The teacher is a vector or image run of a velocity-field method (not meanflow, ot-meanflow,
shortcut, or the score-learning ones). A class-conditional teacher's pairs are integrated with the
label of a training image each (the labels of the target's training rows, in order), through the
teacher's guided field at its ``eval_guidance`` w: the student learns that guided flow as a plain
conditional one (no condition dropout; sampled at guidance 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch

from flowmatch.metrics.evaluate import EvalReport
from flowmatch.metrics.report import eval_row, format_table
from flowmatch.models.guidance import guided
from flowmatch.objectives import methods
from flowmatch.runs.build import build_model
from flowmatch.runs.config import RunConfig, load_toml
from flowmatch.runs.data import RunData
from flowmatch.runs.directory import CONFIG_FILE
from flowmatch.runs.image import ImageKind
from flowmatch.runs.kind import Report
from flowmatch.runs.path_options import velocity_model
from flowmatch.runs.vector import VectorKind
from flowmatch.training.checkpoint import latest_checkpoint, load_checkpoint, load_weights
from flowmatch.training.config import TrainerConfig
from flowmatch.training.distill import distill_matcher
from flowmatch.training.reflow import PairedBatches, reflow_pairs
from flowmatch.training.trainer import Trainer, TrainResult

__all__ = ["DistillKind", "ImageDistillKind", "teacher_settings", "check_distill", "DATA_FIELDS"]

#: dopri5's tolerance for the pairs of an image teacher (vector teachers: 1e-5). Measured on a
#: digits UNet: 1e-5 took 290 evaluations per trajectory, 1e-3 took 32, and pixels live in [-1, 1]
#: with 17 grey levels, so 1e-3 is far below what the images resolve.
IMAGE_PAIR_TOL = 1e-3

#: The settings that decide a run's data: a student must share them with its teacher.
DATA_FIELDS = ("source", "target", "n_train", "n_test", "test_split", "seed")


def teacher_settings(teacher: str | Path) -> dict[str, Any]:
    """The teacher run's config.toml as a dict (ValueError naming the path when it has none)."""
    if not isinstance(teacher, (str, Path)) or not str(teacher):
        raise ValueError(f"distill must be the directory of a trained run, got {teacher!r}")
    path = Path(teacher) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"distill must name a trained run directory (with {CONFIG_FILE}), got {str(teacher)!r}")
    return load_toml(path)


def check_distill(cfg: RunConfig) -> RunConfig:
    """The rules of a distilled run; returns the teacher's config. Raises ValueError naming the
    rule and the value."""
    from flowmatch.data.images import is_image_spec
    from flowmatch.data.sequence_files import is_sequence_spec

    if cfg.distill is None:
        raise ValueError("a distilled run needs distill, the directory of its teacher run; got none")
    teacher = RunConfig.from_dict(teacher_settings(cfg.distill))
    if teacher.distill is not None:
        raise ValueError(f"distill needs a teacher trained as a flow, got the distilled run {cfg.distill!r}")
    if teacher.snapshots is not None or is_sequence_spec(teacher.target):
        what = f"snapshots {teacher.snapshots!r}" if teacher.snapshots is not None else f"target {teacher.target!r}"
        raise ValueError(f"distill supports vector and image runs, got a teacher with {what}")
    spec = methods.spec(teacher.method)
    if not spec.is_flow or spec.average_velocity or spec.learns_score:
        raise ValueError(
            f"distill needs a teacher whose network is a velocity field (not an average-velocity, score or "
            f"regression method), got method {teacher.method!r}"
        )
    if cfg.target_param != "velocity":
        raise ValueError(
            f"a distilled student is a velocity network: target_param must be 'velocity', got {cfg.target_param!r}"
        )
    if cfg.cond != teacher.cond:
        raise ValueError(
            f"a distilled run keeps its teacher's condition: cond must be {teacher.cond!r}, got {cfg.cond!r}"
        )
    if cfg.guidance_dropout != 0:
        raise ValueError(
            "a distilled student learns its teacher's guided flow as a conditional one: guidance_dropout must be 0, "
            f"got {cfg.guidance_dropout}"
        )
    if is_image_spec(cfg.target) and cfg.model not in ("auto", "unet"):
        raise ValueError(f"an image student is a UNet (model auto or unet), got {cfg.model!r}")
    for name in DATA_FIELDS:
        if getattr(cfg, name) != getattr(teacher, name):
            raise ValueError(
                f"a distilled run uses its teacher's data: {name} must be {getattr(teacher, name)!r} "
                f"(the teacher's), got {getattr(cfg, name)!r}"
            )
    return teacher


def _distill_trainer(
    cfg: RunConfig, data: RunData, out: Path | None, *, device: torch.device, settings: TrainerConfig
) -> Trainer:
    """The student's Trainer: a fresh network of the run's architecture on the teacher's dopri5 pairs."""
    tcfg = check_distill(cfg)  # also: cfg.distill is set
    teacher, teacher_step = _teacher(tcfg, Path(str(cfg.distill)), data, device)
    if data.source_is_stream:
        dims = data.shape if data.shape is not None else (data.dim,)
        g = torch.Generator(device="cpu").manual_seed(cfg.seed)
        x0 = torch.randn((len(data.target.train), *dims), generator=g).to(device)
    else:
        x0 = data.source.train.to(device)
    cond, field = None, teacher
    if cfg.cond == "label" and data.labels is not None:
        cond = data.labels.train.to(device)
        field = guided(teacher, tcfg.eval_guidance)
    tol = IMAGE_PAIR_TOL if data.is_image else 1e-5
    pairs = reflow_pairs(field, x0, solver="dopri5", atol=tol, rtol=tol, chunk_size=512, cond=cond)
    batches = PairedBatches(pairs.x0, pairs.x1, name="teacher pairs", cond=pairs.cond)
    return Trainer(
        build_model(cfg, data.dim, shape=data.shape, num_classes=data.num_classes),
        distill_matcher(cfg.distill_steps),
        batches.source,
        batches.target,
        settings,
        run_dir=out,
        device=device,
        metadata={
            "method": cfg.method,
            "dim": data.dim,
            "cond": cfg.cond,
            "distill": str(cfg.distill),
            "distill_steps": cfg.distill_steps,
            "teacher_step": teacher_step,
            "teacher_nfe": pairs.nfe,
            "teacher_tol": tol,
            "teacher_guidance": tcfg.eval_guidance if cond is not None else None,
        },
    )


def _teacher(tcfg: RunConfig, path: Path, data: RunData, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The teacher's sampling network (EMA weights when it has them) and its step."""
    if latest_checkpoint(path / "checkpoints") is None:
        raise ValueError(f"distill needs a trained teacher, run directory {str(path)!r} has no checkpoint yet")
    ck = load_checkpoint(path / "checkpoints")
    model = VectorKind().build_model(tcfg, data)
    weights, file = (ck.ema, "ema.safetensors") if ck.ema is not None else (ck.model, "model.safetensors")
    load_weights(model, weights, (ck.path or path / "checkpoints") / file)
    return velocity_model(tcfg, model).to(device).eval(), ck.step


def _summary(cfg: RunConfig) -> dict[str, Any]:
    return {"distill": str(cfg.distill), "distill_steps": cfg.distill_steps}


class DistillKind(VectorKind):
    """A vector run whose Trainer regresses the teacher's pairs on the K-step grid."""

    name = "distill"

    def check(self, cfg: RunConfig, data: RunData, *, evaluate: bool) -> None:
        check_distill(cfg)
        super().check(cfg, data, evaluate=evaluate)

    def make_trainer(
        self, cfg: RunConfig, data: RunData, out: Path | None, *, device: torch.device, settings: TrainerConfig
    ) -> Trainer:
        return _distill_trainer(cfg, data, out, device=device, settings=settings)

    def report_text(self, cfg: RunConfig, report: Report, result: TrainResult | None) -> str:
        row = eval_row(
            f"{cfg.method} distill-{cfg.distill_steps}",
            cast(EvalReport, report),
            None if result is None else result.elapsed_s,
        )
        return format_table([row])

    def summary(self, cfg: RunConfig, data: RunData) -> dict[str, Any]:
        return {**super().summary(cfg, data), **_summary(cfg)}


class ImageDistillKind(ImageKind):
    """An image run (unconditional or class-conditional) whose Trainer regresses the teacher's
    pairs on the K-step grid; evaluated like every image run (classifier accuracy, FD)."""

    name = "image-distill"

    def check(self, cfg: RunConfig, data: RunData, *, evaluate: bool) -> None:
        check_distill(cfg)
        super().check(cfg, data, evaluate=evaluate)

    def make_trainer(
        self, cfg: RunConfig, data: RunData, out: Path | None, *, device: torch.device, settings: TrainerConfig
    ) -> Trainer:
        return _distill_trainer(cfg, data, out, device=device, settings=settings)

    def summary(self, cfg: RunConfig, data: RunData) -> dict[str, Any]:
        return {**super().summary(cfg, data), **_summary(cfg)}
