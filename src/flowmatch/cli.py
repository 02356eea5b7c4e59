"""The ``flowmatch`` command: train, sample, eval, plot, demo.

Errors in what the user typed or supplied (ValueError) print one line ``flowmatch: error: ...``
on stderr and exit with code 2, no traceback; set FLOWMATCH_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from flowmatch.report import eval_row, format_table

__all__ = ["main", "build_parser"]

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


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    from flowmatch.config import RunConfig

    defaults = RunConfig()
    for f in fields(RunConfig):
        default = getattr(defaults, f.name)
        kind = {int: int, float: float, str: str}.get(type(default), float if f.name == "sigma" else str)
        p.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
            metavar=f.name.upper(), help=f"{_HELP[f.name]} (default: {default if default is not None else 'method default'})",
        )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowmatch",
        description="Train, sample and evaluate conditional flow matching models "
        "(I-CFM, OT-CFM, FM, SB-CFM, VP-CFM, rectified flow).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model into a run directory",
                       description="Train a flow matching model; writes config.toml, checkpoints/, "
                       "log.csv, metrics.json and plots into --out.")
    _add_run_flags(p)
    p.add_argument("--config", type=str, default=None, help="TOML file of settings; flags override it")
    p.add_argument("--out", type=str, default=None, help="run directory to create (required unless --resume RUN)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _common(p)

    p = sub.add_parser("sample", help="generate samples from a trained run",
                       description="Integrate the trained flow from fresh source samples; writes an (N, D) .npy array.")
    p.add_argument("run", help="run directory")
    p.add_argument("--n", type=int, default=1000, help="number of samples (default: 1000)")
    p.add_argument("--solver", default="euler", help="euler, midpoint, heun, rk4, dopri5 (default: euler)")
    p.add_argument("--steps", type=int, default=100, help="solver steps (default: 100)")
    p.add_argument("--atol", type=float, default=1e-5, help="dopri5 absolute tolerance")
    p.add_argument("--rtol", type=float, default=1e-5, help="dopri5 relative tolerance")
    p.add_argument("--seed", type=int, default=0, help="seed of the source draw (default: 0)")
    p.add_argument("--out", required=True, help="output .npy file")
    p.add_argument("--trajectory", default=None, help="also save the trajectory (T+1, N, D) to this .npy")
    p.add_argument("--plot", default=None, help="also plot the samples against the test target to this PNG")
    p.add_argument("--no-ema", action="store_true", help="sample with the raw weights, not the EMA")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--chunk-size", type=int, default=None, help="integrate at most this many samples at once")
    _common(p)

    p = sub.add_parser("eval", help="evaluate a trained run on its held-out split",
                       description="W2/W1/MMD to held-out target samples, NPE, straightness, NFE.")
    p.add_argument("run", help="run directory")
    p.add_argument("--solver", default=None, help="solver (default: the run's eval_solver)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the run's eval_steps)")
    p.add_argument("--n", type=int, default=None, help="use the first N test points (default: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(p)

    p = sub.add_parser("plot", help="redraw a run's plots",
                       description="Write samples.png, trajectories.png and loss.png into the run directory.")
    p.add_argument("run", help="run directory")
    p.add_argument("--solver", default=None, help="solver (default: the run's eval_solver)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the run's eval_steps)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    _common(p)

    p = sub.add_parser("demo", help="train OT-CFM and I-CFM on gaussian -> moons, evaluate and plot",
                       description="The built-in demo: trains OT-CFM and I-CFM from N(0, I) to moons, "
                       "prints a table (method, W2 to held-out target, NFE, train time) and writes "
                       "plots and metrics into --out.")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--steps", type=int, default=None, help="training steps per method")
    p.add_argument("--methods", default="ot-cfm,i-cfm", help="comma-separated methods (default: ot-cfm,i-cfm)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _common(p)
    return parser


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    from flowmatch.config import RunConfig

    return {f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None}


def _cmd_train(args: argparse.Namespace) -> int:
    from flowmatch.config import RunConfig, load_toml
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


def _cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from flowmatch._validate import check_positive_int
    from flowmatch.data import resolve_distribution
    from flowmatch.run import load_run
    from flowmatch.solvers import sample

    n = check_positive_int("--n", args.n)
    if not str(args.out).endswith(".npy"):
        raise ValueError(f"--out must be a .npy file, got {args.out!r}")
    run = load_run(args.run, device=args.device, use_ema=not args.no_ema)
    src = resolve_distribution(run.config.source, dim=run.data.dim if run.config.source == "gaussian" else None)
    x0 = src.sample(n, generator=torch.Generator().manual_seed(args.seed)).to(run.device)
    res = sample(run.model, x0, solver=args.solver, steps=args.steps, atol=args.atol, rtol=args.rtol,
                 return_trajectory=args.trajectory is not None, chunk_size=args.chunk_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, res.x.cpu().numpy())
    if args.trajectory is not None:
        np.save(args.trajectory, res.trajectory.cpu().numpy())
    if args.plot is not None:
        from flowmatch import plots

        plots.plot_samples(res.x.cpu(), run.data.target.test, args.plot, source=x0.cpu(),
                           title=f"{run.config.method}: {args.solver} {args.steps}")
    if not args.quiet:
        print(f"wrote {n} samples of dimension {run.data.dim} to {out} ({args.solver}, NFE {res.nfe})")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from flowmatch.run import evaluate_run, load_run

    run = load_run(args.run, device=args.device)
    n = args.n
    if n is not None:
        from flowmatch._validate import check_positive_int

        n = check_positive_int("--n", n)
    rep = evaluate_run(run, solver=args.solver, steps=args.steps, n=n)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    elif not args.quiet:
        print(f"{args.run}: {run.config.method}, step {run.step}, {rep.n_test} test points")
        print(format_table([eval_row(run.config.method, rep, None)]))
        print(f"W1 {rep.w1:.4f}  MMD {rep.mmd:.2e}  straightness {rep.straightness:.4f}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from flowmatch.run import load_run, plot_run

    run = load_run(args.run, device=args.device)
    written = plot_run(run.path, run.model, run.data, run.config, solver=args.solver, steps=args.steps)
    if not args.quiet:
        for p in written.values():
            print(f"wrote {p}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from flowmatch.demo import run_demo

    run_demo(args.out, methods=[m.strip() for m in args.methods.split(",") if m.strip()],
             steps=args.steps, device=args.device, seed=args.seed, quiet=args.quiet)
    return 0


_COMMANDS = {"train": _cmd_train, "sample": _cmd_sample, "eval": _cmd_eval, "plot": _cmd_plot,
             "demo": _cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowmatch`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.threads is not None:
            import torch

            from flowmatch._validate import check_positive_int

            torch.set_num_threads(check_positive_int("--threads", args.threads))
        return _COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("FLOWMATCH_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"flowmatch: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowmatch: interrupted (the latest checkpoint is kept; continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
