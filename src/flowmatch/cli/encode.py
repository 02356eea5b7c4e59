"""flowmatch encode: map data to the source through a trained run's flow (or back, with --decode)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowmatch.cli._common import add_common, add_device

NAME = "encode"
HELP = "encode data to the source (t 1 -> 0) through a trained flow, or decode with --decode"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Integrate the trained flow backwards (data -> source codes z) or, with "
        "--decode, forwards (codes -> data); reads an (N, D) array, writes an (N, D) .npy "
        "(image runs: rows are flattened (C, H, W) images).",
    )
    p.add_argument("run", help="run directory")
    p.add_argument(
        "--data", required=True, help="input (N, D) array: .npy, .npz[:key], .csv or .pt, D the run's dimension"
    )
    p.add_argument("--out", required=True, help="output .npy file")
    p.add_argument("--decode", action="store_true", help="decode source codes into data (t 0 -> 1)")
    p.add_argument("--solver", default="dopri5", help="euler, midpoint, heun, rk4, dopri5 (default: dopri5)")
    p.add_argument("--steps", type=int, default=100, help="fixed-step solver steps (default: 100)")
    p.add_argument("--atol", type=float, default=1e-5, help="dopri5 absolute tolerance (default: 1e-5)")
    p.add_argument("--rtol", type=float, default=1e-5, help="dopri5 relative tolerance (default: 1e-5)")
    p.add_argument("--chunk-size", type=int, default=None, help="integrate at most this many rows at once")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from flowmatch.data import load_array
    from flowmatch.runs.run import load_run
    from flowmatch.sampling.encode import decode, encode

    if not str(args.out).endswith(".npy"):
        raise ValueError(f"--out must be a .npy file, got {args.out!r}")
    x = load_array(args.data)
    run = load_run(args.run, device=args.device, use_ema=not args.no_ema)
    if x.shape[1] != run.data.dim:
        raise ValueError(
            f"--data must have D = {run.data.dim} columns (the run's dimension), "
            f"got shape {tuple(x.shape)} in {args.data!r}"
        )
    cond = getattr(run.config, "cond", "none")
    if cond != "none":
        raise ValueError(f"flowmatch encode supports unconditional runs, got a run with cond {cond!r}")
    shape = getattr(run.data, "shape", None)
    if shape is not None and len(shape) > 1:  # image runs: rows are flattened (C, H, W) images
        x = x.reshape(x.shape[0], *shape)
    fn = decode if args.decode else encode
    res = fn(
        run.model,
        x.to(run.device),
        solver=args.solver,
        steps=args.steps,
        atol=args.atol,
        rtol=args.rtol,
        chunk_size=args.chunk_size,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, res.x.reshape(res.x.shape[0], -1).cpu().numpy())
    if not args.quiet:
        what = "decoded" if args.decode else "encoded"
        print(f"{what} {x.shape[0]} points of dimension {run.data.dim} to {out} ({args.solver}, NFE {res.nfe})")
    return 0
