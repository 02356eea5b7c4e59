"""``flowmatch eval`` and ``flowmatch sample`` of manifold runs (``--manifold sphere|torus``):
NLL against the exact density and MMD^2 (:mod:`flowmatch.metrics.manifold`), and samples drawn
by the projected solvers (:mod:`flowmatch.sampling.manifold`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import cast

__all__ = ["manifold_eval", "manifold_sample"]


def manifold_eval(args: argparse.Namespace, run, n: int | None) -> int:
    """``flowmatch eval RUN`` of a manifold run; --nll is implied (the density is exact)."""
    from flowmatch.metrics.manifold import ManifoldReport
    from flowmatch.runs.run import evaluate_run

    if args.guidance is not None:
        raise ValueError(f"--guidance applies to conditional image and sequence runs, got manifold run {args.run!r}")
    rep = cast(ManifoldReport, evaluate_run(run, solver=args.solver, steps=args.steps, n=n))
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    elif not args.quiet:
        print(f"{args.run}: {run.config.method} on the {run.config.manifold}, step {run.step}, {rep.n} test points")
        print(rep.text(run.config.method))
    return 0


def manifold_sample(args: argparse.Namespace, run, n: int) -> int:
    """``flowmatch sample RUN --out FILE.npy``: n points of the run's flow from the uniform law
    (``--solver`` euler, midpoint or rk4; ``--plot`` the chart figure)."""
    import numpy as np
    import torch

    from flowmatch.sampling.manifold import MANIFOLD_SOLVERS, sample_manifold

    for flag in ("text", "wav", "png", "infill", "grid", "cond", "guidance", "churn"):
        if getattr(args, flag, None) is not None:
            raise ValueError(f"--{flag} does not apply to manifold runs, got it for {args.run!r}")
    if getattr(args, "sde", False):
        raise ValueError(f"--sde does not apply to manifold runs (geodesic paths have no noise), got {args.run!r}")
    if args.out is None or not str(args.out).endswith(".npy"):
        raise ValueError(f"sample of a manifold run needs --out FILE.npy, got {args.out!r}")
    if args.solver not in MANIFOLD_SOLVERS:
        raise ValueError(
            f"--solver of a manifold run must be one of {', '.join(MANIFOLD_SOLVERS)}, got {args.solver!r}"
        )
    m = run.data.manifold
    g = torch.Generator().manual_seed(args.seed)
    x0 = m.random_uniform(n, generator=g).to(run.device)
    res = sample_manifold(
        run.model, m, x0, solver=args.solver, steps=args.steps, return_trajectory=args.trajectory is not None
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, res.x.cpu().numpy())
    if args.trajectory is not None:
        np.save(args.trajectory, res.require_trajectory().cpu().numpy())
    if args.plot is not None:
        from flowmatch.plots.manifold import plot_manifold_samples

        plot_manifold_samples(
            run.config.manifold,
            res.x.cpu(),
            run.data.test,
            args.plot,
            density=run.data.target.log_prob,
            title=f"{run.config.method}: {args.solver} {args.steps}",
        )
    if not args.quiet:
        print(f"wrote {n} points on the {run.config.manifold} to {out} ({args.solver}, NFE {res.nfe})")
    return 0
