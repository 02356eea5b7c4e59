"""Cost of the minibatch OT coupling: ``flowmatch bench coupling``.

Prints, side by side from one process (every figure a median over interleaved repeats, so that
load from other processes hits all variants alike; ratios are taken within each repeat, then the
median, and come as wall time and as process CPU time, the latter insensitive to other jobs):

1. **Step time** of training the 3x64 SELU MLP with I-CFM and with OT-CFM, for data of 2
   (N(0, I) -> moons), 64 and 3072 dimensions (N(0, I) -> a 10-component Gaussian mixture) at
   batch 128, 256, 512 and 1024, through :class:`flowmatch.training.trainer.Trainer`: OT-CFM with the exact
   coupling solved inline (``coupling_workers=0``) and prefetched in a worker thread
   (``coupling_workers=1``), with the compiled auction (``auto``) and with POT's ``emd`` (the
   previous default), and TorchCFM's ``ExactOptimalTransportConditionalFlowMatcher`` when
   ``torchcfm`` is importable. Columns: ms per step, ratio to I-CFM (and its distance from 1.2),
   the coupling's solve time alone (cost matrix + solver, no training), the fraction of distinct
   pairs in a batch and the batch's total transport cost relative to POT's exact optimum; above
   batch 256 also block OT (random blocks of 256, prefetched).
2. **Large batches** (4096 to 16384, 2D): :class:`flowmatch.couplings.BlockOT` (sorted and
   random partitions) against the exact full-batch optimum where it is computed, its solve time,
   and the I-CFM / OT-CFM step time with the block coupling prefetched.
3. **Quality** (``--quality``): equal training on N(0, I) -> moons, then W2 (Euler 100), NPE and
   W2 after 1, 2 and 4 Euler steps, for exact OT against POT's plan sampled with replacement (as
   TorchCFM does) at batch 256, and exact full-batch OT against block OT at batch 1024.

This module is a thin script over the library (:mod:`flowmatch.couplings`, :mod:`flowmatch.training.trainer`,
:mod:`flowmatch.metrics.evaluate`); the CLI only parses flags.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.io import atomic_write_text, write_json
from flowmatch.bench.coupling_report import format_tables
from flowmatch.bench.coupling_setup import (
    CouplingBenchResult,
    CouplingBenchSettings,
    WithReplacementOT,
    bench_trainer,
    sample_pools,
)
from flowmatch.couplings import BlockOT, Coupling, ExactOT, Pairing
from flowmatch.data.batches import TensorBatches
from flowmatch.models import MLP
from flowmatch.objectives import methods
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.ot.assignment import solve_assignment
from flowmatch.paths import LinearPath
from flowmatch.training.optim import adamw
from flowmatch.training.trainer import Trainer

__all__ = ["CouplingBenchSettings", "CouplingBenchResult", "run_coupling_bench", "WithReplacementOT"]


def _batch(dim: int, n: int, seed: int) -> tuple[Tensor, Tensor]:
    return sample_pools(dim, n, seed + 17)


# ----------------------------------------------------------------------------------------------
# timing helpers


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else math.nan


def _time_trainer(make: Callable[[], Trainer]) -> tuple[float, float]:
    """(wall ms, process CPU ms) per training step."""
    t = make()
    start, cpu = time.perf_counter(), time.process_time()
    t.fit()
    return ((time.perf_counter() - start) / t.config.steps * 1e3, (time.process_time() - cpu) / t.config.steps * 1e3)


def _torchcfm_step_fn(dim: int, batch: int, pools: tuple[Tensor, Tensor], seed: int):
    """One TorchCFM OT-CFM training step (their matcher, our MLP and AdamW), or None."""
    try:
        from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
    except ImportError:
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(dim)
    fm = ExactOptimalTransportConditionalFlowMatcher(sigma=0.1)
    opt = adamw(model, 1e-3, 1e-5, torch.device("cpu"))  # the Trainer's optimiser, for a fair step
    src, tgt = TensorBatches(pools[0]), TensorBatches(pools[1])
    g = torch.Generator().manual_seed(seed)

    def step() -> None:
        x0, x1 = src(batch, generator=g), tgt(batch, generator=g)
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        loss = torch.mean((model(xt, t) - ut) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _trainer_timing(
    make_matcher: Callable[[], FlowMatcher],
    dim: int,
    batch: int,
    steps: int,
    workers: int,
    pools: tuple[Tensor, Tensor],
    seed: int,
) -> Callable[[], tuple[float, float]]:
    """A variant of the step-time table: each call times a fresh trainer with a fresh matcher."""
    return lambda: _time_trainer(lambda: bench_trainer(make_matcher(), dim, batch, steps, workers, pools, seed))


def _icfm() -> FlowMatcher:
    return methods.get_flow_matcher("i-cfm")


def _ot_matcher(coupling: Coupling) -> FlowMatcher:
    return FlowMatcher(LinearPath(0.1), coupling)


def _fresh_pairing(make: Callable[[], Coupling], x0: Tensor, x1: Tensor) -> Pairing:
    return make()(x0, x1)


def _time_steps(step: Callable[[], None], steps: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return ((time.perf_counter() - start) / steps * 1e3, (time.process_time() - cpu) / steps * 1e3)


def _time_call(fn: Callable[[], Any], repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - start)
    return _median(ts) * 1e3


def _pair_stats(x0: Tensor, x1: Tensor, i0: Tensor, i1: Tensor, opt_cost: float) -> tuple[float, float]:
    """(fraction of distinct pairs, total squared cost of the pairs / exact optimum)."""
    n = x0.shape[0]
    a, b = x0.double().reshape(n, -1), x1.double().reshape(n, -1)
    cost = float(((a[i0] - b[i1]) ** 2).sum())
    distinct = len(set(zip(i0.tolist(), i1.tolist()))) / len(i0)
    return distinct, cost / opt_cost if opt_cost > 0 else math.nan


def _torchcfm_pairs(x0: Tensor, x1: Tensor):
    from torchcfm.optimal_transport import OTPlanSampler

    sampler = OTPlanSampler(method="exact")
    pi = sampler.get_map(x0, x1)
    i, j = sampler.sample_map(pi, x0.shape[0], replace=True)
    return sampler, torch.as_tensor(i), torch.as_tensor(j)


# ----------------------------------------------------------------------------------------------
# 1. step time table


def _step_rows(s: CouplingBenchSettings, log) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    has_tcfm = s.torchcfm and _torchcfm_step_fn(2, 8, sample_pools(2, 64, 0), 0) is not None
    for dim in s.dims:
        for batch in s.batches:
            steps = max(4, round(s.steps * 256 / batch / (4 if dim >= 1024 else 1)))
            pools = sample_pools(dim, max(4 * batch, 4096), s.seed)
            # every timing is bound to this (dim, batch) here and called within this iteration only
            timing = partial(_trainer_timing, dim=dim, batch=batch, steps=steps, pools=pools, seed=s.seed)
            variants: dict[str, Callable[[], tuple[float, float]]] = {
                "i-cfm": timing(_icfm, workers=0),
                "ot-cfm auction inline": timing(lambda: FlowMatcher(LinearPath(0.1), ExactOT()), workers=0),
                f"ot-cfm auction prefetch({s.workers})": timing(
                    lambda: FlowMatcher(LinearPath(0.1), ExactOT()), workers=s.workers
                ),
                "ot-cfm emd inline": timing(lambda: FlowMatcher(LinearPath(0.1), ExactOT("emd")), workers=0),
                f"ot-cfm emd prefetch({s.workers})": timing(
                    lambda: FlowMatcher(LinearPath(0.1), ExactOT("emd")), workers=s.workers
                ),
            }
            block = BlockOT(s.quality_block)
            if batch > s.quality_block:
                variants[f"ot-cfm block{s.quality_block} prefetch({s.workers})"] = timing(
                    partial(_ot_matcher, block), workers=s.workers
                )
            if has_tcfm:
                tstep = _torchcfm_step_fn(dim, batch, pools, s.seed)
                variants["torchcfm ot-cfm"] = partial(_time_steps, tstep, steps)
            if batch <= 256:  # warm-up (compiles the kernel, fills caches)
                for fn in variants.values():
                    fn()
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
            for _ in range(s.repeats):
                for name, fn in variants.items():
                    times[name].append(fn())
            # the coupling alone, and the quality of its pairs, on one batch
            x0, x1 = _batch(dim, batch, s.seed)
            cost = ExactOT().cost(x0.double(), x1.double()).numpy()
            opt = solve_assignment(cost, solver="emd").cost
            solve = {
                "ot-cfm auction": _time_call(partial(_fresh_pairing, ExactOT, x0, x1), s.repeats),
                "ot-cfm emd": _time_call(partial(_fresh_pairing, partial(ExactOT, "emd"), x0, x1), s.repeats),
            }
            stats = {
                "ot-cfm auction": _pair_stats(x0, x1, torch.arange(batch), ExactOT()(x0, x1).i1, opt),
                "ot-cfm emd": _pair_stats(x0, x1, torch.arange(batch), ExactOT("emd")(x0, x1).i1, opt),
            }
            if batch > s.quality_block:
                gb = torch.Generator().manual_seed(s.seed)
                solve["ot-cfm block"] = _time_call(partial(block, x0, x1, generator=gb), s.repeats)
                stats["ot-cfm block"] = _pair_stats(x0, x1, torch.arange(batch), block(x0, x1, generator=gb).i1, opt)
            if has_tcfm:
                sampler, i, j = _torchcfm_pairs(x0, x1)
                solve["torchcfm ot-cfm"] = _time_call(partial(sampler.sample_plan, x0, x1), s.repeats)
                stats["torchcfm ot-cfm"] = _pair_stats(x0, x1, i, j, opt)
            base = times["i-cfm"]
            for name, ts in times.items():
                key = next((k for k in solve if name.startswith(k)), None)
                ms, cpu_ms = _median([t[0] for t in ts]), _median([t[1] for t in ts])
                # ratios paired by repeat (same minute of machine load), then the median
                ratio = _median([t[0] / b[0] for t, b in zip(ts, base)])
                cpu_ratio = _median([t[1] / b[1] for t, b in zip(ts, base)])
                row = {
                    "dim": dim,
                    "batch": batch,
                    "method": name,
                    "step_ms": ms,
                    "ratio": ratio,
                    "cpu_ms": cpu_ms,
                    "cpu_ratio": cpu_ratio,
                    "solve_ms": solve.get(key, math.nan) if key else math.nan,
                    "distinct": stats[key][0] if key else math.nan,
                    "cost_vs_emd": stats[key][1] if key else math.nan,
                    "steps": steps,
                    "step_ms_all": ts,
                }
                rows.append(row)
            if log:
                log(
                    f"dim {dim:>4} batch {batch:>4}: "
                    + ", ".join(f"{r['method']} {r['step_ms']:.1f} ms ({r['ratio']:.2f}x)" for r in rows[-len(times) :])
                )
    return rows


# ----------------------------------------------------------------------------------------------
# 2. large batches


def _large_rows(s: CouplingBenchSettings, log) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for batch in s.large:
        x0, x1 = _batch(2, batch, s.seed)
        reps = max(1, min(3, s.repeats))
        exact_cost = exact_ms = math.nan
        if batch <= s.exact_large_max:
            start = time.perf_counter()
            p = ExactOT()(x0, x1)
            exact_ms = (time.perf_counter() - start) * 1e3
            exact_cost = float(((x0.double() - x1.double()[p.i1]) ** 2).sum())
        pools = sample_pools(2, max(2 * batch, 10_000), s.seed)
        steps = max(3, round(s.steps * 256 / batch))
        g = torch.Generator().manual_seed(s.seed)
        icfm_timing = _trainer_timing(_icfm, 2, batch, steps, 0, pools, s.seed)
        icfm = [icfm_timing()[0] for _ in range(reps)]
        for partition in ("sorted", "random"):
            coupling = BlockOT(s.block_size, partition=partition)
            solve_ms = _time_call(partial(coupling, x0, x1, generator=g), reps)
            p = coupling(x0, x1, generator=g)
            cost = float(((x0.double() - x1.double()[p.i1]) ** 2).sum())
            ot_timing = _trainer_timing(partial(_ot_matcher, coupling), 2, batch, steps, s.workers, pools, s.seed)
            step = [ot_timing()[0] for _ in range(reps)]
            row = {
                "batch": batch,
                "coupling": f"block {s.block_size} {partition}",
                "solve_ms": solve_ms,
                "cost_vs_exact": cost / exact_cost if exact_cost == exact_cost else math.nan,
                "exact_solve_ms": exact_ms,
                "icfm_step_ms": _median(icfm),
                "ot_step_ms": _median(step),
                "ratio": _median(step) / _median(icfm),
                "distinct": len(set(p.i1.tolist())) / batch,
                "cost_matrix_mib_full_float32": batch * batch * 4 / 2**20,
                "cost_matrix_mib_blocks": (-(-batch // s.block_size)) * s.block_size**2 * 8 / 2**20,
            }
            rows.append(row)
            if log:
                log(
                    f"large batch {batch}: {row['coupling']}: solve {solve_ms:.0f} ms, cost/exact "
                    f"{row['cost_vs_exact']:.4f}, step ratio {row['ratio']:.2f}"
                )
    return rows


def run_coupling_bench(
    out: str | Path | None, settings: CouplingBenchSettings | None = None, *, log: Callable[[str], None] | None = print
) -> CouplingBenchResult:
    """Run the benchmark; write ``table.md`` and ``results.json`` into ``out`` (None: nothing written)."""
    s = settings or CouplingBenchSettings()
    before = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    try:
        if s.torchcfm and log:
            try:
                import torchcfm  # noqa: F401
            except ImportError:
                log("torchcfm is not importable: its rows are skipped (pip install --no-deps torchcfm)")
        rows = _step_rows(s, log)
        large = _large_rows(s, log) if s.large else []
        if s.quality:
            from flowmatch.bench.coupling_quality import quality_rows
        quality = quality_rows(s, log) if s.quality else []
    finally:
        torch.set_num_threads(before)
    table = format_tables(rows, large, quality, s)
    res = CouplingBenchResult(rows, large, quality, table)
    if out is not None:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "table.md", table + "\n")
        write_json(d / "results.json", {"settings": asdict(s), "steps": rows, "large": large, "quality": quality})
        res.files = {"table": d / "table.md", "results": d / "results.json"}
    return res
