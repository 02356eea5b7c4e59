"""A run directory: build everything a :class:`~flowmatch.config.RunConfig` describes, train it,
evaluate it, plot it, and load it back.

Layout of a run directory::

    config.toml      every setting (``flowmatch train --config RUN/config.toml`` repeats the run)
    checkpoints/     safetensors + JSON, atomic (see flowmatch.checkpoint)
    log.csv          step, loss, lr, grad_norm, elapsed_s
    metrics.json     evaluation at the end of training
    samples.png, trajectories.png, loss.png

Seeds: the data split is drawn from a CPU generator seeded with ``seed + DATA_SEED_OFFSET`` and
the training loop from a generator seeded with ``seed``, so the two streams never coincide.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch import methods
from flowmatch._io import atomic_write_text, write_json
from flowmatch.checkpoint import latest_checkpoint, load_checkpoint
from flowmatch.config import RunConfig, dump_toml
from flowmatch.data import DataSplit, make_split, resolve_distribution
from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.evaluate import EvalReport, evaluate_model
from flowmatch.models import MLP
from flowmatch.train import Trainer, TrainerConfig, TrainResult, resolve_device

__all__ = ["RunData", "LoadedRun", "build_data", "build_model", "train_run", "load_run",
           "evaluate_run", "plot_run", "DATA_SEED_OFFSET"]

DATA_SEED_OFFSET = 1_000_003
CONFIG_FILE = "config.toml"
#: Settings that may differ between a run and its resumption (the rest must match).
RESUME_MAY_CHANGE = frozenset({"steps", "log_every", "checkpoint_every", "keep_checkpoints",
                               "eval_solver", "eval_steps", "device"})


@dataclass
class RunData:
    """Train/test splits of source and target, all (N, D) tensors on the CPU."""

    source: DataSplit
    target: DataSplit
    source_is_stream: bool
    dim: int


def build_data(cfg: RunConfig) -> RunData:
    """Resolve the source and target specs and draw their splits (deterministic in cfg.seed)."""
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


def build_model(cfg: RunConfig, dim: int) -> nn.Module:
    """The velocity MLP of the config, initialised from ``cfg.seed`` without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return MLP(dim, hidden=cfg.hidden, depth=cfg.depth, activation=cfg.activation,
                   time_embedding=cfg.time_embedding)


def _trainer_config(cfg: RunConfig, quiet: bool) -> TrainerConfig:
    return TrainerConfig(
        steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, lr_schedule=cfg.lr_schedule, weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip, ema_decay=cfg.ema_decay, seed=cfg.seed, log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every, keep_checkpoints=cfg.keep_checkpoints, quiet=quiet,
    )


def _make_trainer(cfg: RunConfig, data: RunData, out: Path | None, quiet: bool) -> Trainer:
    device = resolve_device(cfg.device)
    if data.source_is_stream:
        dim = data.dim
        source = StreamBatches(
            lambda n, generator=None: torch.randn(n, dim, generator=generator, device=device),
            device=device, name="source",
        )
    else:
        source = TensorBatches(data.source.train.to(device), name="source training")
    target = TensorBatches(data.target.train.to(device), name="target training")
    return Trainer(
        build_model(cfg, data.dim), methods.get(cfg.method, sigma=cfg.sigma), source, target,
        _trainer_config(cfg, quiet), run_dir=out, device=device,
        metadata={"method": cfg.method, "dim": data.dim},
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
    """
    out_path = Path(out) if out is not None else None
    if resume:
        if out_path is None or not (out_path / CONFIG_FILE).is_file():
            raise ValueError(f"cannot resume: run directory {str(out)!r} has no {CONFIG_FILE}")
        saved = RunConfig.from_toml(out_path / CONFIG_FILE)
        for name, value in saved.to_dict().items():
            if name not in RESUME_MAY_CHANGE and getattr(cfg, name) != value:
                raise ValueError(
                    f"cannot resume with a different {name}: the run has {value!r}, got {getattr(cfg, name)!r}"
                )
        ck = latest_checkpoint(out_path / "checkpoints")
        if ck is None:
            raise ValueError(f"cannot resume: no checkpoint in {str(out_path / 'checkpoints')!r}")
        done = int(json.loads((ck / "state.json").read_text())["step"])
        if cfg.steps < done:
            raise ValueError(f"steps must be >= the checkpoint's step {done}, got {cfg.steps}")
    elif out_path is not None and out_path.exists() and not out_path.is_dir():
        raise ValueError(f"the run directory must be a directory, got the file {str(out_path)!r}")
    elif out_path is not None and out_path.exists() and any(out_path.iterdir()) and not force:
        raise ValueError(
            f"run directory {str(out_path)!r} exists and is not empty; pass --resume to continue it "
            "or --force to overwrite it"
        )
    data = build_data(cfg)
    trainer = _make_trainer(cfg, data, out_path, quiet)  # checks batch size against the data
    if out_path is not None and not resume:
        if out_path.exists() and force:
            shutil.rmtree(out_path)
        out_path.mkdir(parents=True, exist_ok=True)
        write_config(cfg, out_path)
    elif out_path is not None and resume:
        write_config(cfg, out_path)
    result = trainer.fit(resume=resume)
    report = None
    if evaluate:
        report = evaluate_model(
            trainer.sampling_model, data.source.test.to(trainer.device),
            data.target.test.to(trainer.device), solver=cfg.eval_solver, steps=cfg.eval_steps,
        )
    if out_path is not None:
        summary = {"train": {"steps": result.step, "final_loss": result.final_loss,
                             "train_time_s": result.elapsed_s, "steps_per_s": result.steps_per_s},
                   "method": cfg.method, "source": cfg.source, "target": cfg.target}
        if report is not None:
            summary["eval"] = report.to_dict()
        write_json(out_path / "metrics.json", summary)
        if plots:
            plot_run(out_path, trainer.sampling_model, data, cfg)
    return trainer, result, report


def write_config(cfg: RunConfig, out: Path) -> None:
    header = "flowmatch run configuration; repeat with: flowmatch train --config config.toml --out NEW_DIR"
    atomic_write_text(out / CONFIG_FILE, dump_toml(cfg.to_dict(), header))


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
    data = build_data(cfg)
    model = build_model(cfg, data.dim)
    model.load_state_dict(ck.ema if (use_ema and ck.ema is not None) else ck.model)
    dev = resolve_device(device)
    return LoadedRun(cfg, model.to(dev).eval(), data, ck.step, path, dev)


def evaluate_run(run: LoadedRun, *, solver: str | None = None, steps: int | None = None,
                 n: int | None = None) -> EvalReport:
    """Evaluate a loaded run on its held-out test split (the first ``n`` test points)."""
    x0 = run.data.source.test[:n].to(run.device)
    x1 = run.data.target.test[:n].to(run.device)
    return evaluate_model(run.model, x0, x1, solver=solver or run.config.eval_solver,
                          steps=steps or run.config.eval_steps)


def plot_run(out: Path, model: nn.Module, data: RunData, cfg: RunConfig,
             *, solver: str | None = None, steps: int | None = None) -> dict[str, Path]:
    """samples.png, trajectories.png and loss.png of a run."""
    from flowmatch import plots
    from flowmatch.solvers import sample

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


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    p = Path(run_dir) / "metrics.json"
    return json.loads(p.read_text()) if p.is_file() else {}
