"""flowmatch train: train a model into a run directory."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from flowmatch.cli._common import add_common

NAME = "train"
HELP = "train a model into a run directory"

# Help text of every RunConfig field (flag --name-with-dashes).
_HELP = {
    "source": "source distribution q0: a built-in name (gaussian, moons, 8gaussians, ...) or a .npy/.npz/.csv/.pt file",
    "target": "target distribution q1: a built-in name or a data file of shape (N, D)",
    "n_train": "training points drawn per built-in distribution (files: all rows but the test part)",
    "n_test": "held-out points per distribution, used by the evaluation",
    "test_split": "built-in data: fresh (independent test draw) or paper (random split of one draw)",
    "method": "flow matching method: i-cfm, ot-cfm, fm, sb-cfm, vp-cfm, rf",
    "sigma": "path noise sigma (fm: sigma_min); default: the method's paper value",
    "hidden": "width of each hidden layer of the MLP",
    "depth": "number of hidden layers of the MLP",
    "activation": "MLP activation: selu, silu, relu, gelu, tanh, elu",
    "time_embedding": "how t enters the MLP: concat or sinusoidal",
    "steps": "optimisation steps",
    "batch_size": "pairs per step",
    "lr": "AdamW learning rate",
    "lr_schedule": "constant, or cosine decay to 0 over the run",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "clip the gradient norm to this value (0: off)",
    "ema_decay": "decay of the EMA of the weights used for sampling (0: off)",
    "seed": "random seed (data split, initialisation, batches, noise)",
    "device": "auto (CUDA when present), cpu, cuda, cuda:N or mps",
    "log_every": "write the mean loss to log.csv every this many steps",
    "checkpoint_every": "write a checkpoint every this many steps (and at the end)",
    "keep_checkpoints": "how many checkpoints to keep",
    "eval_solver": "solver for the final evaluation: euler, midpoint, heun, rk4, dopri5",
    "eval_steps": "solver steps for the final evaluation",
}


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field (defaults read from the dataclass, without importing torch)."""
    from flowmatch.config import RunConfig

    for f in fields(RunConfig):
        default = f.default
        kind = {int: int, float: float, str: str}.get(type(default), float if f.name == "sigma" else str)
        shown = default if default is not None else "method default"
        p.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
            metavar=f.name.upper(), help=f"{_HELP[f.name]} (default: {shown})",
        )


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=HELP,
                       description="Train a flow matching model; writes config.toml, checkpoints/, "
                       "log.csv, metrics.json and plots into --out.")
    add_run_flags(p)
    p.add_argument("--config", type=str, default=None, help="TOML file of settings; flags override it")
    p.add_argument("--out", type=str, default=None, help="run directory to create (or, with --resume, to continue)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_common(p)
    p.set_defaults(func=run)
    return p


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    from flowmatch.config import RunConfig

    return {f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None}


def run(args: argparse.Namespace) -> int:
    from flowmatch.config import RunConfig, load_toml
    from flowmatch.report import eval_row, format_table
    from flowmatch.run import CONFIG_FILE, train_run

    if args.out is None:
        raise ValueError("train needs --out RUN_DIR (the run directory to write or, with --resume, to continue)")
    settings: dict[str, Any] = {}
    if args.resume:
        run_cfg = Path(args.out) / CONFIG_FILE
        if not run_cfg.is_file():
            raise ValueError(f"cannot resume: run directory {args.out!r} has no {CONFIG_FILE}")
        settings.update(load_toml(run_cfg))
    if args.config is not None:
        settings.update(load_toml(args.config))
    settings.update(_explicit(args))
    cfg = RunConfig.from_dict(settings)
    _, result, report = train_run(cfg, args.out, resume=args.resume, force=args.force,
                                  quiet=args.quiet, plots=not args.no_plots)
    if not args.quiet:
        print(f"trained {cfg.method} for {result.step} steps in {result.elapsed_s:.1f} s "
              f"({result.steps_per_s:.1f} steps/s); final loss {result.final_loss:.4f}")
        if report is not None:
            print(format_table([eval_row(cfg.method, report, result.elapsed_s)]))
        print(f"run directory: {args.out}")
    return 0


