"""``flowmatch bench manifold``: Riemannian flow matching on S^2 and T^2, independent vs OT pairs
and Meta's flow_matching beside them (:mod:`flowmatch.bench.manifold`)."""

from __future__ import annotations

import argparse

from flowmatch.cli._common import add_common, add_device, comma_list, default_threads_for_small_models


def add_manifold(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "manifold",
        help="Riemannian FM on the sphere and the torus: NLL vs the exact density, MMD at 1-100 Euler steps",
        description="Train i-cfm, ot-cfm (exact OT on the squared geodesic cost) and Meta's flow_matching "
        "geodesic path (meta-i-cfm, where installed) from the uniform law of S^2 to a vMF mixture and of T^2 to "
        "wrapped Gaussians; score NLL of held-out points against the exact density and MMD^2 after 1, 2, 4, 8 "
        "and 100 projected Euler steps. Writes table.md and results.csv into --out.",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/bench/manifold, or manifold-quick)")
    p.add_argument("--tasks", default=None, help="comma-separated (default: sphere,torus)")
    p.add_argument("--methods", default=None, help="comma-separated (default: i-cfm,ot-cfm,meta-i-cfm)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default: 1)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: 5000)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: 256)")
    p.add_argument("--hidden", type=int, default=None, help="MLP width (default: 64)")
    p.add_argument("--n-test", type=int, default=None, help="held-out points (default: 1000)")
    p.add_argument("--quick", action="store_true", help="smoke run: 60 steps of batch 64, 100 test points")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run_manifold)
    return p


def run_manifold(args: argparse.Namespace) -> int:
    from flowmatch.bench.manifold import ManifoldBenchSettings, run_manifold_bench

    overrides = dict(
        tasks=tuple(comma_list(args.tasks)) if args.tasks is not None else None,
        methods=tuple(comma_list(args.methods)) if args.methods is not None else None,
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        hidden=args.hidden,
        n_test=args.n_test,
        device=None if args.device == "auto" else args.device,
    )
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = ManifoldBenchSettings.quick(**given) if args.quick else ManifoldBenchSettings(**given)
    settings.check()
    default_threads_for_small_models(args, small_model=True)
    out = args.out or ("runs/bench/manifold-quick" if args.quick else "runs/bench/manifold")
    res = run_manifold_bench(out, settings, log=None if args.quiet else print)
    print()
    print(res.table)
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0
