"""Sinkhorn in the kernel domain against the log domain, side by side in one process.

:func:`flowmatch.ot.transport.sinkhorn_log` iterates with matrix-vector products of the kernel
exp(-(C - min C) / epsilon) in float64 while (max C - min C) / epsilon <= ``KERNEL_MAX_RATIO``
(200), and with logsumexp in the log domain beyond. This script times :meth:`Sinkhorn.plan` on
batches of 512 from the paper's 2D tasks with the kernel path on and forced off
(``KERNEL_MAX_RATIO = 0``), alternating the two, one torch thread, and prints the best of the
repeats per mode with the largest plan difference (L1) between them.

Run::

    python benchmarks/sinkhorn_kernel.py [--n 512] [--batches 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch

import flowmatch.ot.transport as transport
from flowmatch.couplings import Sinkhorn
from flowmatch.data.toy2d import sample_toy

CASES = [
    ("gaussian", "8gaussians", 2.0, "absolute"),
    ("gaussian", "moons", 0.05, "mean"),
    ("gaussian", "scurve", 2.0, "absolute"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=512, help="batch size (default 512)")
    ap.add_argument("--batches", type=int, default=10, help="batches per measurement (default 10)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating repeats per mode (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    kernel_ratio = transport.KERNEL_MAX_RATIO
    print("| task | epsilon | log domain ms | kernel ms | speed-up | max plan L1 difference |")
    print("|---|---|---|---|---|---|")
    for source, target, reg, scale in CASES:
        batches = [
            (sample_toy(source, args.n, generator=g), sample_toy(target, args.n, generator=g))
            for _ in range(args.batches)
        ]
        coupling = Sinkhorn(reg, reg_scale=scale)
        times: dict[str, list[float]] = {"log": [], "kernel": []}
        plans: dict[str, list[torch.Tensor]] = {}
        for _ in range(args.repeats):
            for mode, ratio in (("log", 0.0), ("kernel", kernel_ratio)):
                transport.KERNEL_MAX_RATIO = ratio
                start = time.perf_counter()
                plans[mode] = [coupling.plan(x0, x1, warn=False).plan for x0, x1 in batches]
                times[mode].append((time.perf_counter() - start) / len(batches) * 1e3)
        transport.KERNEL_MAX_RATIO = kernel_ratio
        diff = max(float((a.double() - b.double()).abs().sum()) for a, b in zip(plans["log"], plans["kernel"]))
        t_log, t_kernel = min(times["log"]), min(times["kernel"])
        eps = f"{reg:g} ({'x mean C' if scale == 'mean' else 'absolute'})"
        print(f"| {source}->{target} | {eps} | {t_log:.1f} | {t_kernel:.1f} | {t_log / t_kernel:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
