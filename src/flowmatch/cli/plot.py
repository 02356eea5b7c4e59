"""flowmatch plot: redraw a run's plots."""

from __future__ import annotations

import argparse

from flowmatch.cli._common import add_common, add_device

NAME = "plot"
HELP = "redraw a run's plots"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, help=HELP, description="Write samples.png, trajectories.png and loss.png into the run directory."
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--solver", default=None, help="solver (default: the run's eval_solver)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the run's eval_steps)")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from flowmatch.runs.run import load_run, plot_run

    run = load_run(args.run, device=args.device)
    written = plot_run(run.path, run.model, run.data, run.config, solver=args.solver, steps=args.steps)
    if not args.quiet:
        for p in written.values():
            print(f"wrote {p}")
    return 0
