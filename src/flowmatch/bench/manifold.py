"""Riemannian flow matching on S^2 and T^2: ``flowmatch bench manifold`` (issue 21).

For each task (``sphere``: uniform -> the vMF mixture; ``torus``: uniform -> the wrapped-Gaussian
torsion pair, :mod:`flowmatch.data.manifold_toys`) and method (``i-cfm``: independent pairs;
``ot-cfm``: exact minibatch OT on the squared geodesic cost; ``meta-i-cfm``: Meta's
``flow_matching`` geodesic path and Riemannian solver, :mod:`flowmatch.bench.manifold_meta`, where
installed), one run is trained (the manifold run kind, in memory) and scored on held-out points:

- NLL (nats) of the held-out target points by the Riemannian change of variables (rk4, 25 steps),
  beside the exact density's own NLL on the same points (the floor; the gap estimates KL);
- MMD^2 between generated and held-out points after 1, 2, 4, 8 and 100 projected Euler steps,
  beside the floor (two independent target samples), and the mean squared geodesic length
  E d(x0, x_1)^2 of the 100-step map (how much mass the flow moves);
- the training time.

Output directory: ``table.md`` and ``results.csv`` (one row per task, method, seed).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

from flowmatch._utils.io import atomic_write_text
from flowmatch._utils.validate import check_positive_int
from flowmatch.bench.manifold_meta import meta_available, sample_meta, train_meta
from flowmatch.manifolds import Manifold
from flowmatch.metrics.manifold import manifold_mmd
from flowmatch.runs.config import RunConfig
from flowmatch.runs.manifold import ManifoldData, build_manifold_data
from flowmatch.runs.run import train_run
from flowmatch.sampling.manifold import manifold_log_prob, sample_manifold

__all__ = ["ManifoldBenchSettings", "ManifoldBenchResult", "run_manifold_bench", "TASKS", "METHODS", "EULER_STEPS"]

#: task -> (manifold, target)
TASKS = {"sphere": ("sphere", "vmf-mixture"), "torus": ("torus", "wrapped-gaussians")}
METHODS = ("i-cfm", "ot-cfm", "meta-i-cfm")
EULER_STEPS = (1, 2, 4, 8, 100)
_FIELDS = ["task", "method", "seed", "nll", "nll_exact", "mmd_floor"]
_FIELDS += [f"mmd_{k}" for k in EULER_STEPS] + ["transport_cost", "train_s"]


@dataclass(frozen=True)
class ManifoldBenchSettings:
    """Settings of the benchmark (defaults: 5000 steps of batch 256, the 3x64 SELU MLP)."""

    tasks: tuple[str, ...] = tuple(TASKS)
    methods: tuple[str, ...] = METHODS
    seeds: int = 1
    steps: int = 5000
    batch_size: int = 256
    hidden: int = 64
    depth: int = 3
    n_train: int = 10_000
    n_test: int = 1000
    likelihood_steps: int = 25
    device: str = "cpu"

    @classmethod
    def quick(cls, **overrides) -> ManifoldBenchSettings:
        base = cls(steps=60, batch_size=64, n_train=500, n_test=100, likelihood_steps=4)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def check(self) -> None:
        for name, values, allowed in (("task", self.tasks, tuple(TASKS)), ("method", self.methods, METHODS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f"{name}s must be among {', '.join(allowed)}, got {', '.join(values) or 'none'}")
        for name in ("seeds", "steps", "batch_size", "hidden", "depth", "n_train", "n_test", "likelihood_steps"):
            check_positive_int(name, getattr(self, name))


@dataclass
class ManifoldBenchResult:
    rows: list[dict]
    table: str
    files: dict[str, Path]
    notes: list[str]


def _config(s: ManifoldBenchSettings, task: str, method: str, seed: int) -> RunConfig:
    manifold, target = TASKS[task]
    return RunConfig(
        manifold=manifold,
        target=target,
        method=method,
        steps=s.steps,
        batch_size=s.batch_size,
        hidden=s.hidden,
        depth=s.depth,
        n_train=s.n_train,
        n_test=s.n_test,
        seed=seed,
        device=s.device,
        coupling_workers=0,
        log_every=s.steps,
        checkpoint_every=s.steps,
    )


def _meta_sampler(m: Manifold, model: nn.Module, x0: torch.Tensor, k: int) -> torch.Tensor:
    return sample_meta(m, model, x0, k)


def _euler_sampler(m: Manifold, model: nn.Module, x0: torch.Tensor, k: int) -> torch.Tensor:
    return sample_manifold(model, m, x0, solver="euler", steps=k).x


def _score(
    s: ManifoldBenchSettings, data: ManifoldData, model: nn.Module, sampler: Callable[[int], torch.Tensor]
) -> dict[str, float]:
    m = data.manifold
    lik = manifold_log_prob(model, m, data.test, solver="rk4", steps=s.likelihood_steps, chunk_size=1024)
    row: dict[str, float] = {
        "nll": lik.mean_nll,
        "nll_exact": float(-data.target.log_prob(data.test.double()).mean()),
        "mmd_floor": manifold_mmd(m, data.floor, data.test),
    }
    for k in EULER_STEPS:
        x = sampler(k)
        row[f"mmd_{k}"] = manifold_mmd(m, x, data.test)
        if k == max(EULER_STEPS):
            row["transport_cost"] = float((m.dist(data.source_test.double(), x.double()) ** 2).mean())
    return row


def run_manifold_bench(
    out: str | Path, settings: ManifoldBenchSettings, *, log: Callable[[str], None] | None = print
) -> ManifoldBenchResult:
    """Train and score every (task, method, seed); write table.md and results.csv into ``out``."""
    settings.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    notes: list[str] = []
    methods = settings.methods
    if "meta-i-cfm" in methods and not meta_available():
        notes.append("meta-i-cfm skipped: Meta's flow_matching package is not installed")
        methods = tuple(x for x in methods if x != "meta-i-cfm")
    for task in settings.tasks:
        for method in methods:
            for seed in range(settings.seeds):
                cfg = _config(settings, task, "i-cfm" if method == "meta-i-cfm" else method, seed)
                data = build_manifold_data(cfg)
                m = data.manifold
                if method == "meta-i-cfm":
                    model, train_s = train_meta(
                        m,
                        data.train,
                        steps=cfg.steps,
                        batch_size=cfg.batch_size,
                        lr=cfg.lr,
                        weight_decay=cfg.weight_decay,
                        hidden=cfg.hidden,
                        depth=cfg.depth,
                        seed=seed,
                    )
                    sampler = partial(_meta_sampler, m, model, data.source_test)
                else:
                    t0 = time.perf_counter()
                    trainer, _, _ = train_run(cfg, None, quiet=True, evaluate=False, plots=False)
                    train_s = time.perf_counter() - t0
                    model = trainer.sampling_model.eval()
                    sampler = partial(_euler_sampler, m, model, data.source_test)

                row = {"task": task, "method": method, "seed": seed, **_score(settings, data, model, sampler)}
                row["train_s"] = round(train_s, 1)
                rows.append(row)
                if log is not None:
                    log(
                        f"  {task} {method:10s} seed {seed}: NLL {row['nll']:.3f} (exact {row['nll_exact']:.3f})  "
                        + "  ".join(f"MMD@{k} {row[f'mmd_{k}']:.4f}" for k in EULER_STEPS)
                        + f"  (train {train_s:.1f} s)"
                    )
    table = format_manifold_table(rows, settings, notes)
    files = {"table": out / "table.md", "results": out / "results.csv"}
    atomic_write_text(files["table"], table + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(files["results"], buf.getvalue())
    return ManifoldBenchResult(rows, table, files, notes)


def format_manifold_table(rows: list[dict], s: ManifoldBenchSettings, notes: list[str] | None = None) -> str:
    """Markdown: one row per (task, method), means over seeds."""
    head = ["task", "method", "NLL", "exact NLL", "gap"] + [f"MMD² Euler {k}" for k in EULER_STEPS]
    head += ["MMD² floor", "E d(x0,x1)²", "train s"]
    lines = [
        f"Riemannian FM, {s.steps} steps of batch {s.batch_size}, MLP {s.depth}x{s.hidden}, "
        f"{s.n_test} held-out points, {s.seeds} seed(s); NLL in nats (rk4 {s.likelihood_steps} steps), "
        "MMD² on the manifold's features",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"]), []).append(r)

    def mean(rs: list[dict], key: str) -> float:
        return sum(float(r[key]) for r in rs) / len(rs)

    for (task, method), rs in groups.items():
        nll, exact = mean(rs, "nll"), mean(rs, "nll_exact")
        cells = [task, method, f"{nll:.3f}", f"{exact:.3f}", f"{nll - exact:.3f}"]
        cells += [f"{mean(rs, f'mmd_{k}'):.4f}" for k in EULER_STEPS]
        cells += [f"{mean(rs, 'mmd_floor'):.4f}", f"{mean(rs, 'transport_cost'):.3f}", f"{mean(rs, 'train_s'):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for note in notes or []:
        lines += ["", note]
    return "\n".join(lines)
