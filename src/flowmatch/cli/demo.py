"""flowmatch demo: the built-in demo."""

from __future__ import annotations

import argparse

from flowmatch.cli._common import add_common, add_device, comma_list, default_threads_for_small_models

NAME = "demo"
HELP = "train OT-CFM and I-CFM on gaussian -> moons, evaluate and plot"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="The built-in demo: trains OT-CFM and I-CFM from N(0, I) to moons, "
        "prints a table (method, W2 to held-out target, NFE, train time) and writes "
        "plots and metrics into --out.",
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--steps", type=int, default=None, help="training steps per method")
    p.add_argument("--methods", default="ot-cfm,i-cfm", help="comma-separated methods (default: ot-cfm,i-cfm)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test in seconds: 300 steps on 2000 points (500 test points); still trains, samples, "
        "evaluates and plots",
    )
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from flowmatch.runs.demo import run_demo

    default_threads_for_small_models(args, small_model=True)

    run_demo(
        args.out,
        methods=comma_list(args.methods),
        steps=args.steps,
        device=args.device,
        seed=args.seed,
        quiet=args.quiet,
        quick=args.quick,
    )
    return 0
