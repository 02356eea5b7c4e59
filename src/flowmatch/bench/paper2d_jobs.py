"""Cells of the 2D benchmark computed by worker processes side by side (``bench paper2d --jobs N``).

The full table is 130 small trainings (3x64 MLPs) that each use one core well and a second one
badly (two intra-op threads spin-wait on each other), so the way to use a machine's cores is one
process per cell. This module only fills ``out/cells`` ahead of :func:`run_paper2d`'s own pass,
which then finds every cell finished and writes the table and figures as without workers:

1. the evaluation sets (and their sampling floors) of every (task, seed);
2. the cells, as units a worker runs in order: a ``2-rf`` cell and its ``rf`` parent are one
   unit (the reflow needs the parent's model), every other cell is its own unit. Units start
   longest first (by the method's measured cost, below), so the slow SB-CFM cells do not end up
   last on one worker while the others idle.

Each cell is still written atomically by the process that computed it; an interrupted or failed
run keeps every finished cell, and the pending units are cancelled.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from flowmatch.bench.paper2d_setup import TASKS, Paper2DResult, Paper2DSettings

# Relative cost of one cell, from the full table's one-thread cells on a 2-vCPU machine (training
# + evaluation): i-cfm / fm / vp-cfm / rf ~2.5 min, 2-rf with its rf ~5 min, ot-cfm ~6 min, sb-cfm
# ~12 min. Only the order of the units depends on it.
_COST = {"sb-cfm": 5.0, "ot-cfm": 2.5, "2-rf": 2.0}

Key = tuple[str, str, int]


def plan_units(cells: Sequence[tuple[str, str]], seeds: Sequence[int]) -> list[tuple[str, tuple[str, ...], int]]:
    """The units (task, methods run in order, seed) covering ``cells`` x ``seeds``, longest first."""
    units = []
    for t, m in cells:
        if m == "rf" and (t, "2-rf") in cells:
            continue  # computed by the 2-rf unit first
        ms = ("rf", "2-rf") if m == "2-rf" else (m,)
        units += [(t, ms, seed) for seed in seeds]
    return sorted(units, key=lambda u: -_COST.get(u[1][-1], 1.0))  # stable: table order otherwise


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _say(verbose: bool) -> Callable[[str], None]:
    return (lambda line: print(line, flush=True)) if verbose else (lambda _line: None)


def _eval_unit(out: Path, s: Paper2DSettings, task: str, seed: int, force: bool) -> None:
    from flowmatch.bench.paper2d_eval import eval_sets

    eval_sets(out, TASKS[task], seed, s, force)


def _cell_unit(
    out: Path, s: Paper2DSettings, task: str, methods: Sequence[str], seed: int, force: bool, verbose: bool
) -> tuple[list[Key], list[Key], list[Key]]:
    from flowmatch.bench.paper2d_cells import CellStore

    result = Paper2DResult(rows=[], floors={}, table="")
    store = CellStore(out, s, result, _say(verbose), force=force, force_evals=False)
    for m in methods:
        store.get(TASKS[task], m, seed)
    return result.computed, result.reevaluated, result.reused


def _run_all(futures: list, say: Callable[[str], None] | None = None, what: str = "") -> list:
    """The futures' results in submission order; on the first failure the pending ones are
    cancelled (the running ones finish and keep their cells) and the failure is raised."""
    for k, f in enumerate(as_completed(futures), 1):
        error = f.exception()
        if error is not None:
            for other in futures:
                other.cancel()
            raise error
        if say is not None:
            say(f"[paper2d] {k}/{len(futures)} {what} done")
    return [f.result() for f in futures]


def fill_cells(
    out: Path,
    s: Paper2DSettings,
    cells: Sequence[tuple[str, str]],
    seeds: Sequence[int],
    jobs: int,
    force: bool,
    result: Paper2DResult,
    say: Callable[[str], None],
    *,
    verbose: bool,
) -> None:
    """Compute (or re-evaluate) the missing ``cells`` x ``seeds`` of ``out`` with ``jobs`` worker
    processes, each with this process's number of torch threads; ``result`` lists what they did."""
    units = plan_units(cells, seeds)
    tasks = list(dict.fromkeys(t for t, _ in cells))
    say(f"[paper2d] {len(units)} unit(s) of work on {jobs} worker processes")
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads or CUDA
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=_worker_init, initargs=(torch.get_num_threads(),)
    ) as pool:
        _run_all([pool.submit(_eval_unit, out, s, t, seed, force) for t in tasks for seed in seeds])
        futures = [pool.submit(_cell_unit, out, s, t, ms, seed, force, verbose) for t, ms, seed in units]
        for computed, reevaluated, reused in _run_all(futures, say, "units"):
            result.computed += computed
            result.reevaluated += reevaluated
            result.reused += reused
