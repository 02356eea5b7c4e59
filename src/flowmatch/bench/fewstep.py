"""Few-step generation: ``flowmatch bench fewstep``.

Each method is trained as a run (:func:`flowmatch.runs.train_run`, in memory) on the 2D tasks of
Tong et al. (TMLR 2024) with the paper's budget by default (3x64 SELU MLP, AdamW 1e-3, batch 512,
20k steps), then sampled from the same held-out source points at 1, 2, 4 and 100 function
evaluations: Euler steps of the velocity for the flow matching methods, consistency flow
matching and ``i-cfm-distill`` (the i-cfm run distilled into a one-step student on its dopri5 pairs,
:mod:`flowmatch.training.distill`), jumps of the average velocity (:func:`flowmatch.sample_average`) for MeanFlow and
shortcut models. The score is the exact W2 to the
held-out target points; training time is beside each row.

Output directory: ``table.md`` and ``results.csv`` (one row per task, method, NFE and seed).
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from flowmatch._utils.io import atomic_write_text
from flowmatch.metrics.distances import w2
from flowmatch.objectives import methods
from flowmatch.runs.config import RunConfig
from flowmatch.runs.data import build_data
from flowmatch.runs.run import train_run
from flowmatch.sampling.average import sample_average
from flowmatch.sampling.ode import sample
from flowmatch.training.distill import distill
from flowmatch.training.trainer import TrainerConfig

__all__ = ["FewStepSettings", "FewStepResult", "run_fewstep", "TASKS", "METHODS", "NFES"]

#: (source, target) of each task.
TASKS = {
    "n-moons": ("gaussian", "moons"),
    "n-8gaussians": ("gaussian", "8gaussians"),
    "moons-8gaussians": ("moons", "8gaussians"),
}
#: The one-step student distilled from the i-cfm run (flowmatch.training.distill).
DISTILL = "i-cfm-distill"
METHODS = ("i-cfm", "ot-cfm", "meanflow", "ot-meanflow", "shortcut", "cfm-consistency", DISTILL)
NFES = (1, 2, 4, 100)


@dataclass(frozen=True)
class FewStepSettings:
    """Settings of the benchmark (defaults: the paper's 2D budget)."""

    tasks: tuple[str, ...] = tuple(TASKS)
    methods: tuple[str, ...] = METHODS
    seeds: int = 1
    steps: int = 20_000
    batch_size: int = 512
    n_train: int = 10_000
    n_test: int = 1_000
    device: str = "cpu"

    @classmethod
    def quick(cls, **overrides) -> FewStepSettings:
        base = cls(tasks=("n-moons",), steps=40, batch_size=64, n_train=400, n_test=100)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class FewStepResult:
    rows: list[dict]
    table: str
    files: dict[str, Path]


def _check(settings: FewStepSettings) -> None:
    for name, values, allowed in (("task", settings.tasks, tuple(TASKS)), ("method", settings.methods, METHODS)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ValueError(f"{name}s must be among {', '.join(allowed)}, got {', '.join(values) or 'none'}")


def _config(settings: FewStepSettings, task: str, method: str, seed: int) -> RunConfig:
    source, target = TASKS[task]
    return RunConfig(
        method=method,
        source=source,
        target=target,
        steps=settings.steps,
        batch_size=settings.batch_size,
        n_train=settings.n_train,
        n_test=settings.n_test,
        seed=seed,
        device=settings.device,
        coupling_workers=0,
    )


def _train(cfg: RunConfig) -> tuple[nn.Module, float]:
    t0 = time.perf_counter()
    trainer, _, _ = train_run(cfg, None, quiet=True, evaluate=False, plots=False)
    return trainer.sampling_model.eval(), time.perf_counter() - t0


def _distill(teacher: nn.Module, data, cfg: RunConfig, teacher_s: float) -> tuple[nn.Module, float]:
    """The one-step student of the i-cfm teacher, warm-started from it, on dopri5 pairs of the
    training sources, with the teacher's budget; its time includes the teacher's."""
    t0 = time.perf_counter()
    dev = next(teacher.parameters()).device
    config = TrainerConfig(
        steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, quiet=True, log_every=cfg.steps
    )
    res = distill(teacher, teacher, data.source.train.to(dev), config, steps=1, device=dev)
    return res.model.eval(), teacher_s + time.perf_counter() - t0


def run_fewstep(
    out: str | Path, settings: FewStepSettings, *, log: Callable[[str], None] | None = print
) -> FewStepResult:
    """Train every (task, method, seed) run, score it at every NFE; write table.md and results.csv."""
    _check(settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for task in settings.tasks:
        teachers: dict[int, tuple[nn.Module, float]] = {}  # i-cfm per seed, for the distilled student
        for method in settings.methods:
            for seed in range(settings.seeds):
                cfg = _config(settings, task, "i-cfm" if method == DISTILL else method, seed)
                data = build_data(cfg)
                if method == DISTILL or (method == "i-cfm" and DISTILL in settings.methods):
                    if seed not in teachers:
                        teachers[seed] = _train(cfg)
                    model, train_s = teachers[seed]
                    if method == DISTILL:
                        model, train_s = _distill(model, data, cfg, train_s)
                else:
                    model, train_s = _train(cfg)
                dev = next(model.parameters()).device
                x0, x1 = data.source.test.to(dev), data.target.test
                average = method != DISTILL and methods.spec(method).average_velocity
                for nfe in NFES:
                    with torch.no_grad():
                        if average:
                            x = sample_average(model, x0, steps=nfe).x
                        else:
                            x = sample(model, x0, solver="euler", steps=nfe).x
                    rows.append(
                        dict(
                            task=task, method=method, nfe=nfe, seed=seed, w2=w2(x.cpu(), x1), train_s=round(train_s, 1)
                        )
                    )
                if log is not None:
                    mine = rows[-len(NFES) :]
                    log(
                        f"  {task} {method:12s} seed {seed}: "
                        + "  ".join(f"NFE {r['nfe']} W2 {r['w2']:.3f}" for r in mine)
                        + f"  (train {train_s:.1f} s)"
                    )
    table = format_fewstep_table(rows, settings)
    files = {"table": out / "table.md", "results": out / "results.csv"}
    atomic_write_text(files["table"], table + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["task", "method", "nfe", "seed", "w2", "train_s"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(files["results"], buf.getvalue())
    return FewStepResult(rows, table, files)


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def format_fewstep_table(rows: list[dict], settings: FewStepSettings) -> str:
    """Rows task x method, columns W2 at each NFE, the 1-NFE / 100-NFE ratio and training time."""
    head = ["task", "method", *(f"W2 @ {k}" for k in NFES), "1 / 100", "train s"]
    lines = [
        f"{settings.steps} steps of batch {settings.batch_size}, {settings.seeds} seed(s), {settings.n_test} held-out "
        "points; Euler steps for i-cfm, ot-cfm, cfm-consistency and i-cfm-distill (the i-cfm run distilled into one "
        "step; its time includes the teacher's), average-velocity jumps for meanflow and shortcut.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
            mine = [r for r in rows if (r["task"], r["method"]) == (task, method)]
            by = {k: [r["w2"] for r in mine if r["nfe"] == k] for k in NFES}
            ratio = statistics.mean(a / b for a, b in zip(by[1], by[100]))
            train = statistics.mean(r["train_s"] for r in mine)
            lines.append(
                "| " + " | ".join([task, method, *(_cell(by[k]) for k in NFES), f"{ratio:.2f}", f"{train:.0f}"]) + " |"
            )
    return "\n".join(lines)
