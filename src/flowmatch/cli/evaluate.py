"""flowmatch eval: evaluate a trained run on its held-out split."""

from __future__ import annotations

import argparse
import json

from flowmatch.cli._common import add_common, add_device

NAME = "eval"
HELP = "evaluate a trained run on its held-out split"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=HELP,
                       description="W2/W1/MMD to held-out target samples, NPE, straightness, NFE.")
    p.add_argument("run", help="run directory")
    p.add_argument("--solver", default=None, help="solver (default: the run's eval_solver)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the run's eval_steps)")
    p.add_argument("--n", type=int, default=None, help="use the first N test points (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from flowmatch.report import eval_row, format_table
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


