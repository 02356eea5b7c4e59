"""Quality after equal training for the coupling benchmark (``flowmatch bench coupling --quality``):
W2, NPE and few-step W2 on N(0, I) -> moons for exact, with-replacement and block couplings."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from flowmatch.bench.coupling_setup import CouplingBenchSettings, WithReplacementOT, bench_trainer, sample_pools
from flowmatch.couplings import BlockOT, ExactOT
from flowmatch.data import sample_toy
from flowmatch.metrics.evaluate import evaluate_model, w2_at_steps
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.paths import LinearPath

__all__ = ["quality_rows"]


def quality_rows(s: CouplingBenchSettings, log) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(s.seed + 99)
    x0_test = torch.randn(2000, 2, generator=g)
    x1_test = sample_toy("moons", 2000, generator=g)
    cases = [
        (256, "exact (permutation)", lambda: ExactOT()),
        (256, "emd plan, with replacement", lambda: WithReplacementOT()),
        (1024, "exact full batch", lambda: ExactOT()),
        (1024, f"block {s.quality_block} sorted", lambda: BlockOT(s.quality_block, partition="sorted")),
        (1024, f"block {s.quality_block} random", lambda: BlockOT(s.quality_block, partition="random")),
    ]
    rows = []
    for batch, name, make in cases:
        per_seed = []
        for seed in range(s.quality_seeds):
            pools = sample_pools(2, 10_000, 1000 + seed)
            t = bench_trainer(FlowMatcher(LinearPath(0.1), make()), 2, batch, s.quality_steps, s.workers, pools, seed)
            t.config.lr_schedule = "cosine"
            start = time.perf_counter()
            t.fit()
            wall = time.perf_counter() - start
            model = t.model.eval()
            rep = evaluate_model(model, x0_test, x1_test, solver="euler", steps=100, dopri5=False)
            few = w2_at_steps(model, x0_test, x1_test, (1, 2, 4))
            per_seed.append(
                {"w2": rep.w2, "npe": rep.npe, "w2_1": few[1], "w2_2": few[2], "w2_4": few[4], "train_s": wall}
            )
        row = {"batch": batch, "coupling": name, "seeds": s.quality_seeds, "steps": s.quality_steps}
        for k in per_seed[0]:
            vals = [p[k] for p in per_seed]
            row[k] = float(np.mean(vals))
            row[k + "_std"] = float(np.std(vals))
        rows.append(row)
        if log:
            log(
                f"quality batch {batch} {name}: W2 {row['w2']:.3f} NPE {row['npe']:.3f} "
                f"W2@1,2,4 {row['w2_1']:.3f} {row['w2_2']:.3f} {row['w2_4']:.3f} ({row['train_s']:.0f} s)"
            )
    return rows
