"""The built-in demo (``flowmatch demo``, ``make demo``): N(0, I) -> moons with OT-CFM and I-CFM.

Trains each method into ``<out>/<method>/`` (a full run directory), evaluates it on 2000 held-out
target points, and writes the comparison into ``<out>/``: ``metrics.json``, ``samples.png``,
``trajectories.png`` and ``loss.png``. It prints one table row per method plus the sampling floor
(the W2 a perfect sampler would score against the same test set).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch

from flowmatch import plots
from flowmatch._utils.io import write_json
from flowmatch.data import resolve_distribution
from flowmatch.metrics.evaluate import EvalReport, w2_sampling_floor
from flowmatch.metrics.report import eval_row, format_table
from flowmatch.runs.config import RunConfig
from flowmatch.runs.run import build_data, train_run
from flowmatch.sampling.ode import sample

__all__ = ["DEMO_SETTINGS", "QUICK_SETTINGS", "run_demo", "FLOOR_SEED_OFFSET"]

#: The floor's independent test draw uses a generator seeded with seed + this offset.
FLOOR_SEED_OFFSET = 7

#: The demo's settings: the paper's 3x64 SELU MLP and optimiser, a smaller budget.
DEMO_SETTINGS = dict(
    source="gaussian",
    target="moons",
    n_train=10_000,
    n_test=2_000,
    batch_size=256,
    steps=6_000,
    lr_schedule="cosine",
    checkpoint_every=1_000,
)

#: ``flowmatch demo --quick``: the same demo in seconds (smoke test of an install): fewer steps and
#: points; it still trains, samples, evaluates and plots every method.
QUICK_SETTINGS = dict(n_train=2_000, n_test=500, steps=300, checkpoint_every=300)


def _losses(log_csv: Path) -> tuple[list[int], list[float]]:
    steps, losses = [], []
    with open(log_csv, newline="") as f:
        for row in csv.DictReader(f):
            steps.append(int(row["step"]))
            losses.append(float(row["loss"]))
    return steps, losses


def run_demo(
    out: str | Path = "runs/demo",
    *,
    methods: Sequence[str] = ("ot-cfm", "i-cfm"),
    steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    quiet: bool = False,
    quick: bool = False,
) -> dict:
    """Train, evaluate and plot each method on gaussian -> moons; returns the metrics dict.
    ``quick``: with :data:`QUICK_SETTINGS` (``steps`` still overrides its 300 steps)."""
    out = Path(out)
    settings: dict[str, Any] = dict(DEMO_SETTINGS, **(QUICK_SETTINGS if quick else {}), seed=seed, device=device)
    if steps is not None:
        settings["steps"] = steps
    configs = [RunConfig(method=m, **settings) for m in methods]  # validate all before training
    if not configs:
        raise ValueError("demo needs at least one method, got none")
    rows, results, panels, trajs, curves = [], {}, {}, {}, {}
    data = build_data(configs[0])
    for cfg in configs:
        if not quiet:
            print(
                f"[demo] training {cfg.method}: {cfg.source} -> {cfg.target}, {cfg.steps} steps, batch {cfg.batch_size}"
            )
        trainer, res, report = train_run(cfg, out / cfg.method, force=True, quiet=quiet)
        rep = cast(EvalReport, report)  # a vector run's evaluation
        rows.append(eval_row(cfg.method, rep, res.elapsed_s))
        results[cfg.method] = {"train_time_s": res.elapsed_s, "steps": res.step, **rep.to_dict()}
        x0 = data.source.test.to(trainer.device)
        traj = sample(trainer.sampling_model, x0, solver="euler", steps=100, return_trajectory=True)
        panels[cfg.method] = traj.x.cpu()
        trajs[cfg.method] = traj.require_trajectory().cpu()
        curves[cfg.method] = _losses(out / cfg.method / "log.csv")
    floor = w2_sampling_floor(
        resolve_distribution(configs[0].target),
        data.target.test,
        n_train=configs[0].n_train,
        protocol=configs[0].test_split,
        generator=torch.Generator().manual_seed(seed + FLOOR_SEED_OFFSET),
    )
    summary = {
        "task": f"{configs[0].source} -> {configs[0].target}",
        "n_test": int(data.target.test.shape[0]),
        "w2_sampling_floor": floor,
        "settings": settings,
        "methods": results,
    }
    write_json(out / "metrics.json", summary)
    title = f"{summary['task']}, Euler 100 steps"
    plots.plot_sample_panels(panels, data.target.test, out / "samples.png", title=title)
    plots.plot_trajectory_panels(trajs, out / "trajectories.png", target=data.target.test, title=title)
    plots.plot_loss_curves(curves, out / "loss.png", title="training loss")
    if not quiet:
        print()
        print(format_table(rows))
        print(f"W2 sampling floor (an i.i.d. target sample vs the same {summary['n_test']} test points): {floor:.4f}")
        print(
            f"wrote {out}/samples.png, trajectories.png, loss.png, metrics.json; "
            f"run directories {', '.join(str(out / m) for m in methods)}"
        )
    return summary
