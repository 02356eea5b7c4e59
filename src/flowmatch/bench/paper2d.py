"""The 2D benchmark of Tong et al. (TMLR 2024, Table 2): ``flowmatch bench paper2d``.

Four tasks (N -> 8gaussians, moons -> 8gaussians, N -> moons, N -> scurve; N = N(0, I) in 2D)
times the methods OT-CFM, I-CFM, FM (Gaussian source only), SB-CFM, VP-CFM, the 1-rectified flow
(``rf``: I-CFM with sigma = 0) and the 2-rectified flow (``2-rf``: one reflow of ``rf``, see
:mod:`flowmatch.training.reflow`), times seeds. The setup is the paper's (REFERENCES.md, "2D benchmark"):
3x64 SELU MLP, AdamW lr 1e-3, weight decay 1e-5, batch 512, 20k steps, sigma 0.1 (SB-CFM its own
default 1.0, RF 0), 5 seeds, one draw per distribution split at random into 10000 train / 1000
test points (``RunConfig(test_split="paper")``).

Evaluation sets: per task and seed, ``n_eval`` points per distribution (default 10k, as [SF]2M;
the 1000 test points of the training split make W2 and the NPE noisy: W2^2 between two sets of 1000
N(0, I) and moons points ranged from 1.07 to 1.28 over four draws, and the NPE moves with it), the
test part of a second split drawn as the paper's, independent of the training draw.

Per cell (task, method, seed): W2 (exact) between the Euler-100 samples of the evaluation sources
and the evaluation targets, NPE, NFE of dopri5 (atol = rtol = 1e-4) and its W2, on all ``n_eval``
points; W2 after 1, 2, 4, 8 and 100 Euler steps on the first ``n_sweep`` (default 1000); training
wall time. Per task and seed: the sampling floor, W2 between the evaluation targets and an
independent set drawn the same way (:func:`flowmatch.metrics.evaluate.w2_sampling_floor`).

This module is a thin script over the library: data and training come from
:mod:`flowmatch.runs.run`, evaluation from :mod:`flowmatch.metrics.evaluate`, reflow from
:mod:`flowmatch.training.reflow`, figures from :mod:`flowmatch.plots`.

Output directory::

    table.md                      mean ± std over seeds, published values beside ours
    results.csv                   one row per (task, method, seed)
    samples_<task>.png            one panel per method (first seed)
    trajectories_<task>.png
    cells/<task>/<method>/seed<k>/result.json, model.safetensors
    cells/<task>/eval-seed<k>.json   the floor and W2^2(x0, x1) of the evaluation sets

Resumable: a cell is finished when its ``result.json`` exists (written atomically after the
model); running the same command again reuses finished cells and computes only the missing
ones. A finished cell trained with other settings is an error (use another ``--out`` or
``force``), never silently mixed into the table; one evaluated with other evaluation settings
(``n_eval``, ``n_sweep``, the Euler steps, the dopri5 tolerances) is re-evaluated from its saved
model without retraining.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from flowmatch._utils.io import atomic_write_text, write_json
from flowmatch._utils.validate import check_positive_int
from flowmatch.bench.paper2d_cells import CellStore, cell_dir, load_cell_model, read_cell_result
from flowmatch.bench.paper2d_eval import cached_floor, is_evaluated
from flowmatch.bench.paper2d_report import format_paper2d_table, result_row, write_csv
from flowmatch.bench.paper2d_setup import (
    FLOOR_SEED_OFFSET,
    METHODS,
    TASKS,
    Paper2DResult,
    Paper2DSettings,
    Task,
    benchmark_cells,
    check_seq,
)
from flowmatch.runs.run import build_data
from flowmatch.training.trainer import resolve_device

__all__ = [
    "Task",
    "TASKS",
    "METHODS",
    "Paper2DSettings",
    "Paper2DResult",
    "benchmark_cells",
    "run_paper2d",
    "format_paper2d_table",
    "FLOOR_SEED_OFFSET",
    "CellStore",
]


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {seeds!r}")
    return seeds


def _plot_task(out: Path, task: Task, methods: list[str], seed: int, s: Paper2DSettings) -> dict[str, Path]:
    from flowmatch import plots
    from flowmatch.sampling.ode import sample

    device = resolve_device(s.device)
    cfg = s.run_config(task, methods[0], seed)
    data = build_data(cfg)
    x0 = data.source.test.to(device)
    ends, trajs = {}, {}
    for m in methods:
        model = load_cell_model(
            s.run_config(task, m, seed), cell_dir(out, task.key, m, seed) / "model.safetensors", device
        )
        res = sample(model, x0, solver="euler", steps=s.eval_steps, return_trajectory=True)
        ends[m], trajs[m] = res.x.cpu(), res.require_trajectory().cpu()
    title = f"{task.label}: Euler {s.eval_steps} steps, seed {seed}, {s.steps} training steps"
    ncols = min(len(methods), 4)
    return {
        f"samples_{task.key}": plots.plot_sample_panels(
            ends, data.target.test, out / f"samples_{task.key}.png", source=data.source.test, title=title, ncols=ncols
        ),
        f"trajectories_{task.key}": plots.plot_trajectory_panels(
            trajs, out / f"trajectories_{task.key}.png", target=data.target.test, title=title, ncols=ncols
        ),
    }


# ------------------------------------------------------------------------------------- driver


def run_paper2d(
    out: str | Path,
    settings: Paper2DSettings | None = None,
    *,
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    force: bool = False,
    plots: bool = True,
    log: Callable[[str], None] | None = print,
    report_only: bool = False,
    seeds: Sequence[int] | None = None,
    jobs: int = 1,
) -> Paper2DResult:
    """Run (or resume) the 2D benchmark into ``out`` and write table.md, results.csv and figures.

    Args:
        out: output directory (created).
        settings: :class:`Paper2DSettings` (default: the paper's setup).
        tasks: keys of :data:`TASKS` (default: all four).
        methods: names of :data:`METHODS` (default: all). ``2-rf`` also needs the ``rf`` cell of
            the same task and seed, computed (and kept) when missing even if ``rf`` is not listed.
        force: recompute every selected cell even when a finished result exists.
        plots: draw the per-task sample and trajectory figures (of the first seed); a figure is
            redrawn only when its cells changed.
        log: called with one line per cell (None: silent).
        report_only: compute nothing: the table and CSV of the cells already finished and
            evaluated under these settings (e.g. while another process is still running the
            benchmark into ``out``); the others are listed in ``result.missing``. No figures.
        seeds: the seeds to run (default: ``settings.seed_list``, 0 .. seeds-1), e.g. to split
            one table between processes or machines writing the same ``out``.
        jobs: worker processes computing cells side by side (each with this process's number of
            torch threads); see :mod:`flowmatch.bench.paper2d_jobs`. 1: in this process.
    """
    s = settings or Paper2DSettings()
    task_keys = check_seq("task", list(TASKS) if tasks is None else list(tasks), list(TASKS))
    method_names = check_seq("method", list(METHODS) if methods is None else list(methods), METHODS)
    method_names = [m for m in METHODS if m in method_names]  # rf before 2-rf
    seed_list = s.seed_list if seeds is None else _check_seeds(seeds)
    jobs = check_positive_int("jobs", jobs)
    cells = benchmark_cells(task_keys, method_names)
    skipped = [(t, m) for t in task_keys for m in method_names if (t, m) not in cells]
    if not cells:
        raise ValueError(f"no benchmark cell to run: fm needs a Gaussian source, got tasks {', '.join(task_keys)}")
    for t, m in cells:  # validate every config before any training
        s.run_config(TASKS[t], m, 0)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a directory, got the file {str(out)!r}")
    if report_only and not (out / "cells").is_dir():  # nothing to report: create nothing
        raise ValueError(
            f"no finished cell to report: {str(out)!r} holds no benchmark cells (run the "
            f"benchmark into it first; --report-only reads the --out and settings of that run)"
        )
    if not report_only:
        out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _line: None)
    for t, m in skipped:
        say(f"[paper2d] {t}: {m} skipped (it needs a Gaussian source)")

    result = Paper2DResult(rows=[], floors={}, table="", skipped=skipped)
    if jobs > 1 and not report_only:
        from flowmatch.bench.paper2d_jobs import fill_cells

        fill_cells(out, s, cells, seed_list, jobs, force, result, say, verbose=log is not None)
        force = False  # every selected cell is now finished and fresh
    store = CellStore(
        out,
        s,
        result,
        say,
        force=force,
        force_evals=force,
        quiet=set(result.computed) | set(result.reevaluated) | set(result.reused),
    )

    for t, m in cells:
        task = TASKS[t]
        for seed in seed_list:
            if report_only:
                res = read_cell_result(cell_dir(out, t, m, seed), s.fingerprint(m), False)
                if res is None or not is_evaluated(res, s):
                    result.missing.append((t, m, seed))
                    continue
                result.floors[(t, seed)] = cached_floor(out, task, seed, s)
            else:
                res = store.get(task, m, seed)
                result.floors[(t, seed)] = store.evals[(t, seed)].floor
            result.rows.append(result_row(res, result.floors[(t, seed)]))
    if report_only:
        if not result.rows:
            raise ValueError(f"no finished cell to report in {str(out)!r} (of {len(result.missing)} selected)")
        plots = False
        say(f"[paper2d] {len(result.rows)} finished cell(s) reported, {len(result.missing)} missing")

    result.table = format_paper2d_table(result.rows, s)
    result.files["table"] = atomic_write_text(out / "table.md", result.table)
    result.files["csv"] = write_csv(out / "results.csv", result.rows)
    if plots:
        seed = seed_list[0]
        for t in task_keys:
            ms = [m for tt, m in cells if tt == t]
            stamp = {
                "methods": ms,
                "seed": seed,
                "settings": s.fingerprint("2-rf"),
                "cells": {m: (cell_dir(out, t, m, seed) / "result.json").stat().st_mtime_ns for m in ms},
            }
            sidecar = out / f".plots-{t}.json"
            pngs = [out / f"samples_{t}.png", out / f"trajectories_{t}.png"]
            if sidecar.is_file() and json.loads(sidecar.read_text()) == stamp and all(p.is_file() for p in pngs):
                result.files.update({p.stem: p for p in pngs})
                continue
            result.files.update(_plot_task(out, TASKS[t], ms, seed, s))
            write_json(sidecar, stamp)
    return result
