"""flowmatch bench: reproducible benchmarks, one sub-subcommand each (``bench paper2d``, ...).

A new benchmark adds an ``add_<name>(benches)`` function here and lists it in ``BENCHES``; its
work lives in ``flowmatch.bench.<name>``, this module only parses flags.
"""

from __future__ import annotations

import argparse
import sys

from flowmatch.cli._common import add_common, add_device, comma_list

NAME = "bench"
HELP = "run a benchmark (paper2d: the 2D table of Tong et al. TMLR 2024)"


def add_paper2d(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "paper2d", help="the 2D benchmark of Tong et al. TMLR 2024, Table 2",
        description="Tong et al. (TMLR 2024) Table 2: four 2D tasks x OT-CFM, I-CFM, FM, SB-CFM, "
        "VP-CFM, rectified flow (rf) and 2-rectified flow (2-rf) x seeds, with the paper's setup "
        "(3x64 SELU MLP, AdamW 1e-3, batch 512, 20k steps, 10000/1000 random split). Prints and "
        "writes a Markdown table (mean ± std over seeds, published [SF]2M values beside ours, "
        "sampling floor per task), a CSV of every run and sample/trajectory figures. Finished cells "
        "are kept: rerunning the command continues where it stopped.")
    p.add_argument("--out", default=None,
                   help="output directory (default: runs/bench/paper2d, or runs/bench/paper2d-quick with --quick)")
    p.add_argument("--tasks", default=None,
                   help="comma-separated tasks (default: all): n-8gaussians, moons-8gaussians, n-moons, n-scurve")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: all): ot-cfm, i-cfm, fm, sb-cfm, vp-cfm, rf, 2-rf")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default: 20000)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..N-1 (default: 5)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: 512)")
    p.add_argument("--n-train", type=int, default=None, help="training points per distribution (default: 10000)")
    p.add_argument("--n-test", type=int, default=None, help="test points per distribution (default: 1000)")
    p.add_argument("--sigma", type=float, default=None,
                   help="sigma of ot-cfm, i-cfm, fm, vp-cfm (default: 0.1; sb-cfm keeps 1.0, rf 0)")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: 30 steps, batch 64, 256/128 points, 1 seed, every task and method")
    p.add_argument("--force", action="store_true", help="recompute the selected cells even when finished")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run_paper2d)
    return p


#: Benchmarks, in the order --help lists them.
BENCHES = [add_paper2d]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=HELP, description="Reproducible benchmarks; see `flowmatch bench BENCH --help`.")
    benches = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for add in BENCHES:
        add(benches)
    return p


def run_paper2d(args: argparse.Namespace) -> int:
    from flowmatch.bench.paper2d import Paper2DSettings, run_paper2d

    overrides = dict(steps=args.steps, seeds=args.seeds, batch_size=args.batch_size,
                     n_train=args.n_train, n_test=args.n_test, sigma=args.sigma, device=args.device)
    if args.quick:
        settings = Paper2DSettings.quick(**overrides)
    else:
        settings = Paper2DSettings(**{k: v for k, v in overrides.items() if v is not None})
    out = args.out or ("runs/bench/paper2d-quick" if args.quick else "runs/bench/paper2d")
    tasks = comma_list(args.tasks) if args.tasks is not None else None
    methods = comma_list(args.methods) if args.methods is not None else None
    try:
        res = run_paper2d(out, settings, tasks=tasks, methods=methods, force=args.force,
                          plots=not args.no_plots, log=None if args.quiet else print)
    except KeyboardInterrupt:
        print(f"flowmatch: interrupted; finished cells are kept in {out}/cells, rerun the same command "
              "to continue", file=sys.stderr)
        return 130
    if not args.quiet:
        print()
        print(res.table)
        print(f"{len(res.computed)} cell(s) computed, {len(res.reused)} reused; wrote "
              + ", ".join(str(p) for p in res.files.values()))
    return 0
