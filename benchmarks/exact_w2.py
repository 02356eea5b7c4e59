"""Exact W2 between two large equal-size samples: the assignment path against POT's emd2.

:func:`flowmatch.metrics.w2` solves W2 between two unweighted sets of equal size as an
assignment (the compiled auction of :mod:`flowmatch.ot.assignment`, certified to 1e-9 relative)
instead of POT's network simplex. The 2D benchmark needs it at 10k x 10k points (several solves
per cell). This script times both on the same cost matrix for N(0, I) against the paper's 2D
targets, one process, one thread, and prints the two values and their relative difference.

Run::

    python benchmarks/exact_w2.py [--sizes 2000,5000,10000] [--targets 8gaussians,moons]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.spatial.distance import cdist

from flowmatch.data import resolve_distribution
from flowmatch.metrics.distances import ASSIGNMENT_RTOL


def main() -> None:
    import ot

    from flowmatch.ot.assignment import solve_assignment

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,5000,10000", help="comma-separated sample sizes")
    ap.add_argument("--targets", default="8gaussians,moons", help="comma-separated built-in targets")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| target | n | assignment s | emd2 s | speed-up | W2 (assignment) | relative difference |")
    print("|---|---|---|---|---|---|---|")
    for target in args.targets.split(","):
        for n in (int(v) for v in args.sizes.split(",")):
            g = torch.Generator().manual_seed(args.seed)
            x = resolve_distribution("gaussian").sample(n, generator=g).double().numpy()
            y = resolve_distribution(target).sample(n, generator=g).double().numpy()
            cost = cdist(x, y, "sqeuclidean")
            t0 = time.perf_counter()
            a = solve_assignment(cost, rtol=ASSIGNMENT_RTOL).cost / n
            t1 = time.perf_counter()
            w = np.full(n, 1.0 / n)
            b = float(ot.emd2(w, w, cost, numItermax=100_000_000))
            t2 = time.perf_counter()
            print(
                f"| {target} | {n} | {t1 - t0:.2f} | {t2 - t1:.2f} | {(t2 - t1) / (t1 - t0):.1f}x | "
                f"{a**0.5:.6f} | {abs(a - b) / b:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
