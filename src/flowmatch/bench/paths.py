"""Prediction targets and time samplers on a Gaussian path: ``flowmatch bench paths``.

The same network (an MLP) is trained on the CondOT path x_t = t x1 + (1 - t) x0 from x0 ~ N(0, I)
(independent coupling, sigma = 0; ``--scheduler`` takes any other) to predict the velocity, x1, eps or the score (each with its
default weighting, :mod:`flowmatch.objectives.targets`), with t drawn uniformly or logit-normally
(SD3's logit-normal(0, 1)). Each model samples the target

- by the ODE (Euler on the velocity :class:`flowmatch.models.AsVelocity` converts to),
- by the diffusion SDE with churn 1 (:func:`flowmatch.sample_diffusion`, DDIM / DDPM steps),

at 1, 4 and 100 steps. eps and score start at t = 1e-3, where their conversion is regular
(:func:`flowmatch.models.parametrization.regular_times`: alpha_0 = 0 on CondOT); there the x1 they
imply, (x_t - sigma_t eps) / alpha_t, multiplies the network's error by 1 / alpha_t ~ 1000.

Tasks: ``moons`` (N(0, I) -> two moons, 2D; exact W2 on the test points) and ``digits``
(scikit-learn's 8x8 digits flattened to 64 dimensions in [-1, 1]; the Fréchet distance between
Gaussian fits of the generated and the held-out pixels, "FD (pixels)", and W2).

Output directory: ``table.md`` (mean ± std over seeds) and ``results.csv`` (one row per task,
target, time sampler, sampler, steps and seed).
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
from flowmatch.data import resolve_distribution
from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.data.images import load_digits
from flowmatch.metrics.distances import w2
from flowmatch.metrics.images import frechet_distance
from flowmatch.models import MLP
from flowmatch.models.parametrization import AsVelocity, regular_times
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.objectives.time_samplers import parse_time_sampler
from flowmatch.paths import AffinePath, Scheduler, parse_scheduler
from flowmatch.sampling.diffusion import sample_diffusion
from flowmatch.sampling.ode import sample
from flowmatch.training.config import TrainerConfig
from flowmatch.training.trainer import Trainer, resolve_device

__all__ = ["PathsSettings", "PathsBenchResult", "run_paths", "TASKS", "TARGETS", "TIME_SAMPLERS"]

TASKS = ("moons", "digits")
TARGETS = ("velocity", "x1", "eps", "score")
TIME_SAMPLERS = ("uniform", "logit-normal")
SAMPLE_STEPS = (1, 4, 100)


@dataclass(frozen=True)
class PathsSettings:
    """Settings of the benchmark (defaults: the table of docs/benchmarks.md)."""

    tasks: tuple[str, ...] = TASKS
    targets: tuple[str, ...] = TARGETS
    time_samplers: tuple[str, ...] = TIME_SAMPLERS
    seeds: int = 1
    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    n_eval: int = 1000  # generated and held-out points per metric
    device: str = "cpu"
    scheduler: str = "condot"  # the path's scheduler (flowmatch.paths.parse_scheduler)

    @classmethod
    def quick(cls, **overrides) -> PathsSettings:
        base = cls(steps=40, n_eval=200, tasks=("moons",), time_samplers=("uniform",))
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class PathsBenchResult:
    rows: list[dict]
    table: str
    files: dict[str, Path]


def _task_data(task: str, n_eval: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train, test, width): moons draws fresh points; digits holds out its last ``n_eval`` images."""
    if task == "moons":
        dist = resolve_distribution("moons")
        return (
            dist.sample(10_000, torch.Generator().manual_seed(0)),
            dist.sample(n_eval, torch.Generator().manual_seed(1)),
            64,
        )
    x = load_digits().images.reshape(-1, 64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_test = min(n_eval, len(x) // 3)
    return x[perm[n_test:]], x[perm[:n_test]], 256


def _train(task_train: torch.Tensor, width: int, target: str, time_sampler: str, settings: PathsSettings, seed: int):
    sched = parse_scheduler(settings.scheduler)
    dev = resolve_device(settings.device)
    dim = task_train.shape[1]
    torch.manual_seed(seed)
    net = MLP(dim, hidden=width, depth=3)
    fm = FlowMatcher(AffinePath(sched), time_sampler=parse_time_sampler(time_sampler), target_param=target)
    source = StreamBatches(lambda n, generator=None: torch.randn(n, dim, generator=generator, device=dev), device=dev)
    cfg = TrainerConfig(
        steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr, seed=seed, quiet=True, log_every=10**9
    )
    trainer = Trainer(net, fm, source, TensorBatches(task_train.to(dev)), cfg, device=dev)
    trainer.fit()
    return trainer.sampling_model.eval()


def _samples(
    net: nn.Module, sched: Scheduler, target: str, sampler: str, steps: int, n: int, dim: int, seed: int
) -> torch.Tensor:
    dev = next(net.parameters()).device
    t_span = regular_times(sched, target)
    x0 = torch.randn(n, dim, generator=torch.Generator().manual_seed(1000 + seed)).to(dev)
    with torch.no_grad():
        if sampler == "ode":
            field = AsVelocity(net, sched, target, t_range=t_span)
            return sample(field, x0, solver="euler", steps=steps, t_span=t_span).x
        g = torch.Generator(device=dev).manual_seed(2000 + seed)
        return sample_diffusion(net, x0, sched, param=target, churn=1.0, steps=steps, t_span=t_span, generator=g).x


def _metrics(task: str, x: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    x = x.cpu().double()
    if not torch.isfinite(x).all():
        return {"w2": float("inf"), **({"fd": float("inf")} if task == "digits" else {})}
    out = {"w2": w2(x, test.double())}
    if task == "digits":
        out["fd"] = frechet_distance(x, test.double())
    return out


def run_paths(
    out: str | Path, settings: PathsSettings, *, log: Callable[[str], None] | None = print
) -> PathsBenchResult:
    """Train every (task, target, time sampler, seed) model, sample it every way; write the table."""
    for name, values, allowed in (
        ("task", settings.tasks, TASKS),
        ("target", settings.targets, TARGETS),
        ("time sampler", settings.time_samplers, TIME_SAMPLERS),
    ):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ValueError(f"{name}s must be among {', '.join(allowed)}, got {', '.join(values) or 'none'}")
    sched = parse_scheduler(settings.scheduler)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for task in settings.tasks:
        train, test, width = _task_data(task, settings.n_eval)
        for target in settings.targets:
            for ts in settings.time_samplers:
                for seed in range(settings.seeds):
                    t0 = time.perf_counter()
                    net = _train(train, width, target, ts, settings, seed)
                    train_s = time.perf_counter() - t0
                    for sampler in ("ode", "sde"):
                        for steps in SAMPLE_STEPS:
                            x = _samples(net, sched, target, sampler, steps, len(test), train.shape[1], seed)
                            m = _metrics(task, x, test)
                            rows.append(
                                dict(
                                    task=task,
                                    target=target,
                                    time_sampler=ts,
                                    sampler=sampler,
                                    steps=steps,
                                    seed=seed,
                                    train_s=round(train_s, 2),
                                    **m,
                                )
                            )
                    if log is not None:
                        last = [
                            r
                            for r in rows
                            if r["seed"] == seed
                            and r["target"] == target
                            and r["time_sampler"] == ts
                            and r["task"] == task
                        ]
                        log(
                            f"  {task} {target:8s} {ts:12s} seed {seed}: "
                            + "  ".join(f"{r['sampler']}{r['steps']} W2 {r['w2']:.3f}" for r in last)
                            + f"  (train {train_s:.1f} s)"
                        )
    table = format_paths_table(rows, settings)
    files = {"table": out / "table.md", "results": out / "results.csv"}
    atomic_write_text(files["table"], table + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["task", "target", "time_sampler", "sampler", "steps", "seed", "train_s", "w2", "fd"]
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(files["results"], buf.getvalue())
    return PathsBenchResult(rows, table, files)


def _cell(values: list[float]) -> str:
    if any(v != v or v == float("inf") for v in values):
        return "diverged"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def format_paths_table(rows: list[dict], settings: PathsSettings) -> str:
    """One Markdown table per task and metric: rows target x time sampler, columns sampler x steps."""
    lines = [
        f"{settings.scheduler} path from N(0, I), MLP, {settings.steps} steps of batch {settings.batch_size}, "
        f"{settings.seeds} seed(s), {settings.n_eval} points per metric; ODE = Euler on the converted velocity, "
        "SDE = diffusion SDE with churn 1 (DDIM/DDPM steps)."
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        for metric in ("w2", "fd") if task == "digits" else ("w2",):
            label = "W2" if metric == "w2" else "FD (pixels)"
            lines += ["", f"**{task}: {label}**", ""]
            head = ["target", "time"] + [f"{s.upper()} {k}" for s in ("ode", "sde") for k in SAMPLE_STEPS]
            lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            for target in dict.fromkeys(r["target"] for r in rows):
                for ts in dict.fromkeys(r["time_sampler"] for r in rows):
                    cells = [target, ts]
                    for s in ("ode", "sde"):
                        for k in SAMPLE_STEPS:
                            vals = [
                                r[metric]
                                for r in rows
                                if (r["task"], r["target"], r["time_sampler"], r["sampler"], r["steps"])
                                == (task, target, ts, s, k)
                            ]
                            cells.append(_cell(vals) if vals else "-")
                    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
