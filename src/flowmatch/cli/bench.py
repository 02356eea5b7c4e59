"""flowmatch bench: reproducible benchmarks, one sub-subcommand each (``bench paper2d``, ...).

A new benchmark adds an ``add_<name>(benches)`` function here and lists it in ``BENCHES``; its
work lives in ``flowmatch.bench.<name>``, this module only parses flags.
"""

from __future__ import annotations

import argparse
import sys

from flowmatch.cli._common import add_common, add_device, comma_list, default_threads_for_small_models
from flowmatch.cli.bench_data import add_data
from flowmatch.cli.bench_discrete import add_discrete
from flowmatch.cli.bench_fewstep import add_fewstep, add_fewstep_digits
from flowmatch.cli.bench_manifold import add_manifold
from flowmatch.cli.bench_paths import add_paths
from flowmatch.cli.bench_speech import add_speech

NAME = "bench"
HELP = "run a benchmark (paper2d: the 2D table of Tong et al. TMLR 2024; coupling: cost of minibatch OT)"


def add_paper2d(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "paper2d",
        help="the 2D benchmark of Tong et al. TMLR 2024, Table 2",
        description="Tong et al. (TMLR 2024) Table 2: four 2D tasks x OT-CFM, I-CFM, FM, SB-CFM, "
        "VP-CFM, rectified flow (rf) and 2-rectified flow (2-rf) x seeds, with the paper's setup "
        "(3x64 SELU MLP, AdamW 1e-3, batch 512, 20k steps, 10000/1000 random split). Prints and "
        "writes a Markdown table (mean ± std over seeds, published [SF]2M values beside ours, "
        "sampling floor per task), a CSV of every run and sample/trajectory figures. Finished cells "
        "are kept: rerunning the command continues where it stopped.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output directory (default: runs/bench/paper2d, or runs/bench/paper2d-quick with --quick)",
    )
    p.add_argument(
        "--tasks",
        default=None,
        help="comma-separated tasks (default: all): n-8gaussians, moons-8gaussians, n-moons, n-scurve",
    )
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated methods (default: all): ot-cfm, i-cfm, fm, sb-cfm, vp-cfm, rf, 2-rf",
    )
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default: 20000)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..N-1 (default: 5)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: 512)")
    p.add_argument("--n-train", type=int, default=None, help="training points per distribution (default: 10000)")
    p.add_argument(
        "--n-test",
        type=int,
        default=None,
        help="held-out points of the training split per distribution (default: 1000)",
    )
    p.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help="evaluation points per distribution for W2, NPE, dopri5 and the floor, from an "
        "independent split drawn the same way (default: 10000)",
    )
    p.add_argument(
        "--n-sweep",
        type=int,
        default=None,
        help="the first N evaluation points score the few-step W2 sweep (default: 1000)",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="sigma of ot-cfm, i-cfm, fm, vp-cfm (default: 0.1; sb-cfm keeps 1.0, rf 0)",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=None,
        help="evaluate an exponential moving average of the weights with this decay, e.g. "
        "0.999 (default: 0, the trained weights as in the paper; use its own --out)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run: 10 steps, batch 64, 256/128 points, 1 seed, every task and method",
    )
    p.add_argument("--force", action="store_true", help="recompute the selected cells even when finished")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="compute nothing: the table of the cells already finished in --out (e.g. while "
        "another process is still running the benchmark there)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes computing cells side by side, each with --threads torch threads "
        "(default: 1, in this process; about one per core)",
    )
    add_device(p)
    add_common(p)
    p.set_defaults(func=run_paper2d)
    return p


def _int_tuple(name: str, text: str) -> tuple[int, ...]:
    """'128, 256' -> (128, 256); anything but positive integers is a one-line error."""
    try:
        values = tuple(int(v) for v in comma_list(text))
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{name} must be a comma-separated list of positive integers, got {text!r}")
    return values


def add_coupling(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "coupling",
        help="cost of the minibatch OT coupling: OT-CFM vs I-CFM step time, solvers, large batches",
        description="Per-step wall time of I-CFM and OT-CFM training (3x64 MLP; 2, 64 and 3072 "
        "dimensions; batch 128 to 1024) side by side, their ratio, the coupling's solve time alone, "
        "the fraction of distinct pairs and the transport cost against POT's exact optimum, for the "
        "compiled auction and POT's emd, inline and prefetched, and TorchCFM's OT-CFM when torchcfm "
        "is importable; block OT at 4096 to 16384; with --quality, W2/NPE after equal training. "
        "Prints Markdown tables and writes table.md and results.json into --out.",
    )
    p.add_argument("--out", default="runs/bench/coupling", help="output directory (default: runs/bench/coupling)")
    p.add_argument("--dims", default=None, help="comma-separated data dimensions (default: 2,64,3072)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default: 128,256,512,1024)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement at batch 256 (default: 40)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats, medians shown (default: 5)")
    p.add_argument("--workers", type=int, default=None, help="coupling_workers of the prefetched rows (default: 1)")
    p.add_argument(
        "--large",
        default=None,
        help="comma-separated large batches for block OT (default: 4096,8192,16384; 'none' to skip)",
    )
    p.add_argument("--block-size", type=int, default=None, help="block size of the large-batch coupling (default: 512)")
    p.add_argument(
        "--exact-large-max",
        type=int,
        default=None,
        help="compute the exact full-batch optimum up to this batch (default: 4096)",
    )
    p.add_argument("--quality", action="store_true", help="also train and compare W2 / NPE / few-step W2")
    p.add_argument(
        "--quality-block",
        type=int,
        default=None,
        help="block size of the block-OT rows above that batch (step table and quality; default 256)",
    )
    p.add_argument("--quality-steps", type=int, default=None, help="training steps per quality run (default: 3000)")
    p.add_argument("--quality-seeds", type=int, default=None, help="seeds per quality cell (default: 3)")
    p.add_argument("--no-torchcfm", action="store_true", help="skip TorchCFM's rows even when it is installed")
    p.add_argument("--quick", action="store_true", help="smoke run: 2D and 64D, batch 128 and 256, few steps")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    add_common(p)
    p.set_defaults(func=run_coupling)
    return p


def add_ddp(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "ddp",
        help="data-parallel training on this CPU: 1 vs 2 processes, local vs global OT coupling",
        description="OT-CFM on N(0, I) -> moons with 1 process (batch b and 2b) and 2 torchrun/gloo processes "
        "(b rows each) with local and global coupling, plus 2-process I-CFM: steps/s and NPE / W2 on the "
        "held-out split after a fixed number of steps (mean ± std over seeds). Prints a Markdown table and "
        "writes table.md and results.json into --out.",
    )
    p.add_argument("--out", default="runs/bench/ddp", help="output directory (default: runs/bench/ddp)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: 2000)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per process b (default: 64)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..N-1 (default: 2)")
    p.add_argument("--n-train", type=int, default=None, help="training points per distribution (default: 10000)")
    p.add_argument("--n-test", type=int, default=None, help="test points for NPE / W2 (default: 1000)")
    p.add_argument("--quick", action="store_true", help="smoke run: 30 steps, b = 16, 1 seed, small data")
    add_common(p)
    p.set_defaults(func=run_ddp)
    return p


def add_trajectories(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "trajectories",
        help="leave-one-time-point-out W1 on the synthetic bifurcating time course",
        description="Trajectory inference (Tong et al. TMLR 2024, Table 4 protocol) on the built-in course "
        "'bifurcation': for each intermediate time point and seed, train OT-CFM, I-CFM and SB-CFM without "
        "it, push the previous time point to it (SB-CFM by ODE and SDE) and report the exact W1, beside a "
        "straight-line OT interpolation baseline and the paper's single-cell values (another data set). "
        "Writes table.md, results.csv and trajectories.png into --out.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output directory (default: runs/bench/trajectories, or runs/bench/trajectories-quick)",
    )
    p.add_argument("--seeds", type=int, default=None, help="number of training seeds 0..N-1 (default: 3)")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default: 4000)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="pairs per step, split over the intervals (default: 192)"
    )
    p.add_argument("--n", type=int, default=None, help="cells per time point (default: 1000)")
    p.add_argument("--holdouts", default=None, help="comma-separated held-out time indices (default: 1,2,3)")
    p.add_argument("--sb-sigma", type=float, default=None, help="SB-CFM diffusion per unit time (default: 0.5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 cells, 30 steps, 1 seed")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run_trajectories)
    return p


#: Benchmarks, in the order --help lists them.
BENCHES = [
    add_paper2d,
    add_coupling,
    add_ddp,
    add_trajectories,
    add_paths,
    add_fewstep,
    add_fewstep_digits,
    add_speech,
    add_manifold,
    add_data,
    add_discrete,
]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=HELP, description="Reproducible benchmarks; see `flowmatch bench BENCH --help`.")
    benches = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for add in BENCHES:
        add(benches)
    return p


def _settings(cls, quick: bool, overrides: dict):
    """A bench's settings: its ``quick()`` preset or its defaults, with the options given (not None)."""
    if quick:
        return cls.quick(**overrides)
    return cls(**{k: v for k, v in overrides.items() if v is not None})


def run_paper2d(args: argparse.Namespace) -> int:
    from flowmatch.bench.paper2d import Paper2DSettings, run_paper2d

    overrides = dict(
        steps=args.steps,
        seeds=args.seeds,
        batch_size=args.batch_size,
        n_train=args.n_train,
        n_test=args.n_test,
        n_eval=args.n_eval,
        n_sweep=args.n_sweep,
        sigma=args.sigma,
        ema_decay=args.ema_decay,
        device=args.device,
    )
    settings = _settings(Paper2DSettings, args.quick, overrides)
    # its models are 3x64 MLPs: two intra-op threads spin-wait on each other (measured in the
    # background run of the full table: rf cells at 8-12 steps/s with two threads per process,
    # about 240 steps/s alone with one)
    default_threads_for_small_models(args, small_model=True)
    out = args.out or ("runs/bench/paper2d-quick" if args.quick else "runs/bench/paper2d")
    tasks = comma_list(args.tasks) if args.tasks is not None else None
    methods = comma_list(args.methods) if args.methods is not None else None
    try:
        res = run_paper2d(
            out,
            settings,
            tasks=tasks,
            methods=methods,
            force=args.force,
            plots=not args.no_plots,
            log=None if args.quiet else print,
            report_only=args.report_only,
            jobs=args.jobs,
        )
    except KeyboardInterrupt:
        print(
            f"flowmatch: interrupted; finished cells are kept in {out}/cells, rerun the same command to continue",
            file=sys.stderr,
        )
        return 130
    if not args.quiet:
        print()
        print(res.table)
        print(
            f"{len(res.computed)} cell(s) computed, {len(res.reevaluated)} re-evaluated, "
            f"{len(res.reused)} reused, {len(res.missing)} missing; wrote "
            + ", ".join(str(p) for p in res.files.values())
        )
    return 0


def run_coupling(args: argparse.Namespace) -> int:
    from flowmatch.bench.coupling import CouplingBenchSettings, run_coupling_bench

    large = None
    if args.large is not None:
        large = () if args.large.strip().lower() == "none" else _int_tuple("--large", args.large)
    overrides = dict(
        dims=_int_tuple("--dims", args.dims) if args.dims is not None else None,
        batches=_int_tuple("--batches", args.batches) if args.batches is not None else None,
        steps=args.steps,
        repeats=args.repeats,
        workers=args.workers,
        large=large,
        block_size=args.block_size,
        exact_large_max=args.exact_large_max,
        quality_steps=args.quality_steps,
        quality_seeds=args.quality_seeds,
        quality_block=args.quality_block,
        seed=args.seed,
        threads=args.threads,
        quality=True if args.quality else None,
        torchcfm=False if args.no_torchcfm else None,
    )
    settings = _settings(CouplingBenchSettings, args.quick, overrides)
    return _report(run_coupling_bench(args.out, settings, log=None if args.quiet else print))


def run_ddp(args: argparse.Namespace) -> int:
    from flowmatch.bench.ddp import DDPBenchSettings, run_ddp_bench

    overrides = dict(
        steps=args.steps, batch_size=args.batch_size, seeds=args.seeds, n_train=args.n_train, n_test=args.n_test
    )
    settings = _settings(DDPBenchSettings, args.quick, overrides)
    return _report(run_ddp_bench(args.out, settings, log=None if args.quiet else print))


def run_trajectories(args: argparse.Namespace) -> int:
    from flowmatch._utils.validate import check_positive_float, check_positive_int
    from flowmatch.bench.trajectories import TrajectorySettings, run_trajectories

    overrides = dict(
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        n=args.n,
        sb_sigma=args.sb_sigma,
        device=args.device,
        holdouts=_int_tuple("--holdouts", args.holdouts) if args.holdouts is not None else None,
    )
    for name in ("seeds", "steps", "batch_size", "n"):
        if overrides[name] is not None:
            check_positive_int("--" + name.replace("_", "-"), overrides[name])
    if overrides["sb_sigma"] is not None:
        check_positive_float("--sb-sigma", overrides["sb_sigma"])
    default_threads_for_small_models(args, small_model=True)
    settings = _settings(TrajectorySettings, args.quick, overrides)
    out = args.out or ("runs/bench/trajectories-quick" if args.quick else "runs/bench/trajectories")
    return _report(run_trajectories(out, settings, plots=not args.no_plots, log=None if args.quiet else print))


def _report(res) -> int:
    """Print a benchmark result's table and the files it wrote; exit status 0."""
    print()
    print(res.table)
    if res.files:
        print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0
