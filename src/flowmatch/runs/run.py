"""A run directory: build everything a :class:`~flowmatch.runs.config.RunConfig` describes, train it,
evaluate it, plot it, and load it back.

Layout of a run directory::

    config.toml      every setting (``flowmatch train --config RUN/config.toml`` repeats the run)
    checkpoints/     safetensors + JSON, atomic (see flowmatch.training.checkpoint)
    log.csv          step, loss, lr, grad_norm, elapsed_s
    metrics.json     evaluation at the end of training
    samples.png, trajectories.png, loss.png

Seeds: the data split is drawn from a CPU generator seeded with ``seed + DATA_SEED_OFFSET`` and
the training loop from a generator seeded with ``seed``, so the two streams never coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from flowmatch.training import distributed

from flowmatch._utils.io import write_json
from flowmatch.training.checkpoint import latest_checkpoint, load_checkpoint, load_weights
from flowmatch.runs.config import RunConfig
from flowmatch.data import DataSplit, make_split, resolve_distribution
from flowmatch.data.images import is_image_spec
from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.metrics.evaluate import EvalReport, evaluate_model
from flowmatch.runs.build import build_matcher, build_model, trainer_config
from flowmatch.runs.directory import CONFIG_FILE, check_run_dir, claim_run_dir
from flowmatch.training.trainer import Trainer, TrainResult, resolve_device

__all__ = ["RunData", "LoadedRun", "build_data", "build_model", "train_run", "load_run",
           "evaluate_run", "plot_run", "DATA_SEED_OFFSET"]


DATA_SEED_OFFSET = 1_000_003


@dataclass
class RunData:
    """Train/test splits of source and target, all (N, D) tensors on the CPU.

    Image data (:mod:`flowmatch.data.images`): the splits are (N, C, H, W), ``shape`` is (C, H, W),
    ``dim`` is C * H * W, ``labels`` holds the class labels (N,) of the target's train and test
    parts (or None) and ``classes`` their names; the source is N(0, I) noise of that shape.
    """

    source: DataSplit
    target: DataSplit
    source_is_stream: bool
    dim: int
    shape: tuple[int, ...] | None = None
    labels: DataSplit | None = None
    classes: tuple[str, ...] = ()

    @property
    def is_image(self) -> bool:
        """Whether the samples are images (C, H, W)."""
        return self.shape is not None and len(self.shape) == 3

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def build_data(cfg: RunConfig) -> RunData:
    """Resolve the source and target specs and draw their splits (deterministic in cfg.seed)."""
    if is_image_spec(cfg.target):
        return _build_image_data(cfg)
    if cfg.cond == "label":
        raise ValueError(f"cond 'label' needs labelled image data (digits, mnist, cifar10, a folder with "
                         f"class subfolders or an .npz with labels), got target {cfg.target!r}")
    target = resolve_distribution(cfg.target)
    source = resolve_distribution(cfg.source, dim=target.dim if cfg.source == "gaussian" else None)
    if source.dim != target.dim:
        raise ValueError(
            f"source and target must have the same dimension, got {source.dim} ({cfg.source}) "
            f"and {target.dim} ({cfg.target})"
        )
    g = torch.Generator().manual_seed(cfg.seed + DATA_SEED_OFFSET)
    kw = dict(n_train=cfg.n_train, n_test=cfg.n_test, generator=g, protocol=cfg.test_split)
    src_split = make_split(source, **kw)
    tgt_split = make_split(target, **kw)
    return RunData(src_split, tgt_split, source.is_builtin and cfg.source == "gaussian", target.dim)


def _build_image_data(cfg: RunConfig) -> RunData:
    """Image target: train/test images (and labels), N(0, I) noise of the same shape as source."""
    from flowmatch.data.images import image_split

    if cfg.source != "gaussian":
        raise ValueError(f"image targets flow from noise and need --source gaussian, got {cfg.source!r}")
    g = torch.Generator().manual_seed(cfg.seed + DATA_SEED_OFFSET)
    sp = image_split(cfg.target, n_test=cfg.n_test, generator=g)
    shape = tuple(int(s) for s in sp.train.shape[1:])
    if cfg.cond == "label" and sp.train_labels is None:
        raise ValueError(f"cond 'label' needs labelled images (class subfolders, or an .npz with labels), "
                         f"got {cfg.target!r} without labels")
    noise = DataSplit(train=torch.empty((0, *shape)), test=torch.randn((sp.test.shape[0], *shape), generator=g))
    labels = DataSplit(sp.train_labels, sp.test_labels) if sp.train_labels is not None else None
    return RunData(noise, DataSplit(sp.train, sp.test), True, math.prod(shape), shape, labels, sp.classes)


def _make_trainer(cfg: RunConfig, data: RunData, out: Path | None, quiet: bool) -> Trainer:
    device = distributed.local_device(resolve_device(cfg.device))  # cuda:LOCAL_RANK under torchrun
    if data.source_is_stream:
        dims = data.shape if data.shape is not None else (data.dim,)
        source = StreamBatches(
            lambda n, generator=None: torch.randn((n, *dims), generator=generator, device=device),
            device=device, name="source",
        )
    else:
        source = TensorBatches(data.source.train.to(device), name="source training")
    labels = data.labels.train.to(device) if (cfg.cond == "label" and data.labels is not None) else None
    target = TensorBatches(data.target.train.to(device), name="target training", cond=labels)
    return Trainer(
        build_model(cfg, data.dim, shape=data.shape, num_classes=data.num_classes), build_matcher(cfg),
        source, target, trainer_config(cfg, quiet), run_dir=out, device=device,
        metadata={"method": cfg.method, "dim": data.dim, "cond": cfg.cond, "score": cfg.resolved_score},
    )


def train_run(
    cfg: RunConfig,
    out: str | Path | None,
    *,
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
    evaluate: bool = True,
    plots: bool = True,
) -> tuple[Trainer, TrainResult, EvalReport | None]:
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
    if cfg.snapshots is not None:  # trajectory inference across time points (flowmatch.runs.snapshot)
        from flowmatch.runs.snapshot import train_snapshot_run

        return train_snapshot_run(cfg, out_path, resume=resume, force=force, quiet=quiet, evaluate=evaluate,
                                  plots=plots)
    data = build_data(cfg)
    trainer = _make_trainer(cfg, data, out_path, quiet)  # checks batch size against the data
    with claim_run_dir(cfg, out_path, resume=resume, force=force):
        result = trainer.fit(resume=resume)
        if not distributed.info().is_main:  # only rank 0 evaluates and writes
            return trainer, result, None
        report = None
        if evaluate and data.is_image:
            if data.labels is not None:  # the image metrics' classifier needs labels
                from flowmatch.runs.image import evaluate_image_model

                report = evaluate_image_model(trainer.sampling_model, data, cfg, out_path,
                                              guidance=(cfg.eval_guidance,))
        elif evaluate:
            report = evaluate_model(
                trainer.sampling_model, data.source.test.to(trainer.device),
                data.target.test.to(trainer.device), solver=cfg.eval_solver, steps=cfg.eval_steps,
            )
        if out_path is not None:
            summary = {"train": result.summary(), "method": cfg.method, "source": cfg.source, "target": cfg.target,
                       "score": cfg.resolved_score}
            if cfg.cond != "none":
                summary["cond"] = cfg.cond
            if report is not None:
                summary["eval"] = report.to_dict()
            write_json(out_path / "metrics.json", summary)
            if plots:
                plot_run(out_path, trainer.sampling_model, data, cfg)
    return trainer, result, report


@dataclass
class LoadedRun:
    """A trained run: its config, data splits and the sampling model (EMA weights when present)."""

    config: RunConfig
    model: nn.Module
    data: RunData
    step: int
    path: Path
    device: torch.device


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
    if cfg.snapshots is not None:
        from flowmatch.runs.snapshot import build_snapshot_data

        data = build_snapshot_data(cfg)
    else:
        data = build_data(cfg)
    model = build_model(cfg, data.dim, shape=data.shape, num_classes=data.num_classes)
    ema = use_ema and ck.ema is not None
    load_weights(model, ck.ema if ema else ck.model, ck.path / ("ema.safetensors" if ema else "model.safetensors"))
    dev = resolve_device(device)
    return LoadedRun(cfg, model.to(dev).eval(), data, ck.step, path, dev)


def evaluate_run(run: LoadedRun, *, solver: str | None = None, steps: int | None = None,
                 n: int | None = None, guidance: Sequence[float] | None = None):
    """Evaluate a loaded run on its held-out test split (the first ``n`` test points).

    Image runs return an :class:`flowmatch.metrics.images.ImageEvalReport` (classifier accuracy and
    Fréchet distance at each ``guidance`` scale, default the run's ``eval_guidance``); the others an
    :class:`~flowmatch.metrics.evaluate.EvalReport`.
    """
    if run.config.snapshots is not None:
        from flowmatch.runs.snapshot import evaluate_snapshot_model

        return evaluate_snapshot_model(run.model, run.data, run.config, solver=solver, steps=steps, n=n)
    if run.data.is_image:
        from flowmatch.runs.image import evaluate_image_model

        w = tuple(guidance) if guidance is not None else (run.config.eval_guidance,)
        return evaluate_image_model(run.model, run.data, run.config, run.path, guidance=w, solver=solver,
                                    steps=steps, n=n)
    x0 = run.data.source.test[:n].to(run.device)
    x1 = run.data.target.test[:n].to(run.device)
    return evaluate_model(run.model, x0, x1, solver=solver or run.config.eval_solver,
                          steps=steps or run.config.eval_steps)


def plot_run(out: Path, model: nn.Module, data: RunData, cfg: RunConfig,
             *, solver: str | None = None, steps: int | None = None) -> dict[str, Path]:
    """samples.png, trajectories.png and loss.png of a run (image runs: a samples.png grid, one row
    per class for class-conditional runs, at the run's ``eval_guidance``; and loss.png)."""
    from flowmatch import plots
    from flowmatch.sampling.ode import sample

    if cfg.snapshots is not None:
        from flowmatch.runs.snapshot import plot_snapshot_run

        return plot_snapshot_run(out, model, data, cfg, solver=solver, steps=steps)
    if data.is_image:
        from flowmatch.runs.image import plot_image_samples

        written = {"samples": plot_image_samples(model, data, cfg, out / "samples.png", solver=solver, steps=steps)}
        if (out / "log.csv").is_file():
            written["loss"] = plots.plot_loss_csv(out / "log.csv", out / "loss.png")
        return written

    x0 = data.source.test.to(next(model.parameters()).device)
    res = sample(model, x0, solver=solver or cfg.eval_solver, steps=steps or cfg.eval_steps,
                 return_trajectory=True)
    title = f"{cfg.method}: {cfg.source} -> {cfg.target}"
    written = {
        "samples": plots.plot_samples(res.x.cpu(), data.target.test, out / "samples.png",
                                      source=data.source.test, title=title),
        "trajectories": plots.plot_trajectories(res.trajectory.cpu(), out / "trajectories.png",
                                                target=data.target.test, title=title),
    }
    if (out / "log.csv").is_file():
        written["loss"] = plots.plot_loss_csv(out / "log.csv", out / "loss.png")
    return written
