"""flowmatch sample: generate samples from a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowmatch.cli._common import add_common, add_device

NAME = "sample"
HELP = "generate samples from a trained run"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=HELP,
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
    p.add_argument("--chunk-size", type=int, default=None, help="integrate at most this many samples at once")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
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


