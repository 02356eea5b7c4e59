"""``flowmatch bench discrete``: discrete flow matching on digits-tokens and brackets, beside Meta's
flow_matching where it is installed (:mod:`flowmatch.bench.discrete`)."""

from __future__ import annotations

import argparse

from flowmatch.cli._common import add_common, comma_list


def add_discrete(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "discrete",
        help="discrete flow matching: digits-tokens (accuracy, FD) and brackets (valid fraction) at several NFE",
        description="Train dfm (mask, uniform), ot-dfm (Hamming OT) and, where installed, Meta's flow_matching "
        "(the same network) on digits-tokens and brackets; score accuracy and FD of digit samples and the "
        "valid fraction of bracket words at several NFE. Writes table.md into --out.",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/bench/discrete, or discrete-quick)")
    p.add_argument("--tasks", default=None, help="comma-separated: brackets, digits-tokens (default: both)")
    p.add_argument("--nfe", default=None, help="comma-separated sampler steps (default: 8,16,32,64)")
    p.add_argument("--steps", type=int, default=None, help="training steps per row (default: 2000)")
    p.add_argument("--quick", action="store_true", help="a short setting: 300 steps of batch 128, width 64")
    add_common(p)
    p.set_defaults(func=run_discrete)
    return p


def run_discrete(args: argparse.Namespace) -> int:
    from flowmatch._utils.validate import check_positive_int
    from flowmatch.bench.discrete import DiscreteBenchSettings, run_discrete_bench
    from flowmatch.data.tokens import TOKEN_DATASETS

    given: dict = {}
    if args.tasks is not None:
        tasks = tuple(comma_list(args.tasks))
        bad = [t for t in tasks if t not in TOKEN_DATASETS]
        if bad or not tasks:
            raise ValueError(f"--tasks must be among {', '.join(TOKEN_DATASETS)}, got {args.tasks!r}")
        given["tasks"] = tasks
    if args.nfe is not None:
        try:
            given["nfe"] = tuple(check_positive_int("--nfe", int(v)) for v in comma_list(args.nfe))
        except ValueError:
            raise ValueError(f"--nfe must be comma-separated positive integers, got {args.nfe!r}") from None
    if args.steps is not None:
        given["steps"] = check_positive_int("--steps", args.steps)
    settings = DiscreteBenchSettings.quick(**given) if args.quick else DiscreteBenchSettings(**given)
    out = args.out or ("runs/bench/discrete-quick" if args.quick else "runs/bench/discrete")
    res = run_discrete_bench(out, settings, log=None if args.quiet else print)
    print()
    print(res.table)
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0
