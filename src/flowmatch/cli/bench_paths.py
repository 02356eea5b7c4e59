"""``flowmatch bench paths``: prediction targets and time samplers on a Gaussian path
(:mod:`flowmatch.bench.paths`)."""

from __future__ import annotations

import argparse

from flowmatch.cli._common import add_common, add_device, comma_list, default_threads_for_small_models


def add_paths(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "paths",
        help="prediction targets x time samplers on a Gaussian path, ODE against SDE sampling",
        description="The same MLP trained on the CondOT path from N(0, I) to predict the velocity, x1, eps or the "
        "score, with uniform or logit-normal t, on moons (W2) and on scikit-learn's digits as 64-dim vectors "
        "(W2 and the Frechet distance of the pixels); each sampled by the ODE and by the diffusion SDE "
        "(churn 1) at 1, 4 and 100 steps. Writes table.md and results.csv into --out.",
    )
    p.add_argument(
        "--out", default=None, help="output directory (default: runs/bench/paths, or runs/bench/paths-quick)"
    )
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: moons,digits)")
    p.add_argument("--targets", default=None, help="comma-separated targets (default: velocity,x1,eps,score)")
    p.add_argument("--time-samplers", default=None, help="comma-separated (default: uniform,logit-normal)")
    p.add_argument("--seeds", type=int, default=None, help="number of training seeds 0..N-1 (default: 1)")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default: 5000)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: 256)")
    p.add_argument("--n-eval", type=int, default=None, help="generated and held-out points per metric (default: 1000)")
    p.add_argument("--scheduler", default=None, help="the path's scheduler, e.g. vp or cosine (default: condot)")
    p.add_argument("--quick", action="store_true", help="smoke run: moons, uniform t, 40 steps, 200 points")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run_paths)
    return p


def run_paths(args: argparse.Namespace) -> int:
    from flowmatch._utils.validate import check_positive_int
    from flowmatch.bench.paths import PathsSettings, run_paths

    overrides = dict(
        tasks=tuple(comma_list(args.tasks)) if args.tasks is not None else None,
        targets=tuple(comma_list(args.targets)) if args.targets is not None else None,
        time_samplers=tuple(comma_list(args.time_samplers)) if args.time_samplers is not None else None,
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        n_eval=args.n_eval,
        device=args.device,
        scheduler=args.scheduler,
    )
    if args.scheduler is not None:
        from flowmatch.paths import parse_scheduler

        parse_scheduler(args.scheduler)
    for name in ("seeds", "steps", "batch_size", "n_eval"):
        if overrides[name] is not None:
            check_positive_int("--" + name.replace("_", "-"), overrides[name])
    default_threads_for_small_models(args, small_model=True)
    settings = (
        PathsSettings.quick(**overrides)
        if args.quick
        else PathsSettings(**{k: v for k, v in overrides.items() if v is not None})
    )
    out = args.out or ("runs/bench/paths-quick" if args.quick else "runs/bench/paths")
    res = run_paths(out, settings, log=None if args.quiet else print)
    print()
    print(res.table)
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0
