"""Trajectory inference benchmark: ``flowmatch bench trajectories``.

The leave-one-time-point-out protocol of Tong et al. (TMLR 2024, Table 4) on the built-in synthetic
course ``bifurcation`` (:func:`flowmatch.data.snapshots.bifurcation_course`: cells turning on arcs,
a quarter turn every 2 time units, while their radius splits into two branches; time points 0..4,
known dynamics). For every intermediate time point k (1, 2, 3) and seed: train on the other time
points (:mod:`flowmatch.trajectory`), push the population of t_{k-1} to t_k
(:mod:`flowmatch.trajectory.inference`; Euler, ``eval_steps`` per interval) and measure the exact
W1 to the held-out population. Methods: OT-CFM and I-CFM (sigma 0.1), SB-CFM (velocity and score,
``sb_sigma`` the diffusion per unit time) sampled by its ODE and by its SDE, and the straight-line
baseline (exact OT between t_{k-1} and t_{k+1}, interpolated linearly to t_k; it does not learn,
so it has no seed spread: the course is the same for every seed, seeds vary the training).

Output directory: ``table.md`` (mean ± std over seeds per held-out time and of the per-seed mean
over held-out times, with the paper's single-cell values beside, which are another data set),
``results.csv`` (one row per method, sampler, holdout and seed) and ``trajectories.png`` (each
method's paths from t = 0 through the course, first seed, time point 2 held out).
"""

from __future__ import annotations

import csv
import io
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from flowmatch._utils.io import atomic_write_text
from flowmatch.data.snapshots import bifurcation_course
from flowmatch.models import MLP, FlowAndScore
from flowmatch.sampling.ode import SampleResult
from flowmatch.training.trainer import Trainer, TrainerConfig, resolve_device
from flowmatch.trajectory import SnapshotBatches, SnapshotMatcher
from flowmatch.trajectory.inference import baseline_holdout_w1, holdout_w1, push

__all__ = ["TrajectorySettings", "TrajectoryBenchResult", "run_trajectories", "PAPER_TABLE4", "format_table"]

#: Tong et al. TMLR 2024, Table 4: W1 on left-out time points of single-cell data (5 PCs), mean ± std.
#: Another data set: printed for reference only (REFERENCES.md, "Single-cell interpolation").
PAPER_TABLE4 = {
    "ot-cfm": {"Cite": (0.882, 0.058), "EB": (0.790, 0.068), "Multi": (0.937, 0.054)},
    "i-cfm": {"Cite": (0.965, 0.111), "EB": (0.872, 0.087), "Multi": (1.085, 0.099)},
    "sb-cfm": {"Cite": (1.067, 0.107), "EB": (1.221, 0.380), "Multi": (1.129, 0.363)},
}

#: (row label, method, sampler) in table order; sampler "ode", "sde" or "baseline".
ROWS = (
    ("OT-CFM", "ot-cfm", "ode"),
    ("I-CFM", "i-cfm", "ode"),
    ("SB-CFM, ODE", "sb-cfm", "ode"),
    ("SB-CFM, SDE", "sb-cfm", "sde"),
    ("straight line (OT, McCann)", "baseline", "baseline"),
)


@dataclass(frozen=True)
class TrajectorySettings:
    """Settings of the benchmark (defaults: the measured table of docs/benchmarks.md)."""

    n: int = 1000  # cells per time point
    noise: float = 0.2  # diffusion of the course
    holdouts: tuple[int, ...] = (1, 2, 3)
    seeds: int = 3
    steps: int = 4000
    batch_size: int = 192
    lr: float = 1e-3
    hidden: int = 64
    sigma: float = 0.1  # ot-cfm, i-cfm
    sb_sigma: float = 0.5  # sb-cfm: diffusion per unit of time
    eval_steps: int = 100  # Euler steps per interval
    device: str = "cpu"

    @classmethod
    def quick(cls, **overrides) -> TrajectorySettings:
        base = cls(n=200, seeds=1, steps=30, batch_size=48, hidden=32, eval_steps=10)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class TrajectoryBenchResult:
    rows: list[dict]
    table: str
    files: dict[str, Path]


def _train(method: str, snaps, settings: TrajectorySettings, seed: int):
    sigma = settings.sb_sigma if method == "sb-cfm" else settings.sigma
    matcher = SnapshotMatcher.from_method(method, snaps.times, sigma=sigma)
    dim = snaps.dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: nn.Module = MLP(dim, hidden=settings.hidden)
        if matcher.learns_score:
            model = FlowAndScore(model, MLP(dim, hidden=settings.hidden))
    device = resolve_device(settings.device)
    cfg = TrainerConfig(
        steps=settings.steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=seed,
        quiet=True,
        log_every=max(1, settings.steps // 10),
        checkpoint_every=10**9,
    )
    trainer = Trainer(
        model,
        matcher,
        SnapshotBatches(snaps, "source", device=device),
        SnapshotBatches(snaps, "target", device=device),
        cfg,
        device=device,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sinkhorn's fallback warnings, counted by nobody here
        res = trainer.fit()
    return trainer.sampling_model.eval(), res.elapsed_s


def _stats(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def format_table(rows: list[dict], settings: TrajectorySettings, times: Sequence[float]) -> str:
    """Markdown table: W1 per held-out time (mean ± std over seeds), and the mean over held-out times."""
    hs = list(settings.holdouts)
    head = (
        ["method"]
        + [f"W1 at t={times[k]:g}" for k in hs]
        + ["mean W1 (held-out times)", "paper, single-cell (Cite / EB / Multi)"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, method, sampler in ROWS:
        mine = [r for r in rows if r["method"] == method and r["sampler"] == sampler]
        if not mine:
            continue
        cells = [_stats([r["w1"] for r in mine if r["holdout"] == k]) for k in hs]
        seeds = sorted({r["seed"] for r in mine})
        per_seed = [statistics.fmean([r["w1"] for r in mine if r["seed"] == s]) for s in seeds]
        paper = PAPER_TABLE4.get(method) if sampler != "sde" else None
        ref = " / ".join(f"{m:.3f}±{s:.3f}" for m, s in paper.values()) if paper else "-"
        lines.append("| " + " | ".join([label, *cells, _stats(per_seed), ref]) + " |")
    lines.append("")
    lines.append(
        f"Synthetic course 'bifurcation' ({settings.n} cells per time point, noise {settings.noise}); "
        f"{settings.seeds} seed(s), {settings.steps} steps, batch {settings.batch_size}, "
        f"sigma {settings.sigma} (OT-CFM, I-CFM), {settings.sb_sigma} (SB-CFM, per unit time); "
        f"Euler {settings.eval_steps} steps per interval. The paper's column is W1 on single-cell "
        "data (TMLR 2024 Table 4, 5 PCs): a different data set, for reference only."
    )
    return "\n".join(lines)


def _write_csv(rows: list[dict], path: Path) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


def run_trajectories(
    out: str | Path, settings: TrajectorySettings, *, plots: bool = True, log: Callable[[str], None] | None = print
) -> TrajectoryBenchResult:
    """Run every (holdout, seed, method) cell and the baseline; write table.md, results.csv, a figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    full = bifurcation_course(settings.n, noise=settings.noise, seed=0)
    for k in settings.holdouts:
        full.check_index(k, intermediate=True, what="holdout")
    rows: list[dict] = []
    panels: dict[str, SampleResult] = {}

    def add(method, sampler, k, seed, r, train_s):
        rows.append(
            dict(method=method, sampler=sampler, holdout=k, time=r.time, seed=seed, w1=r.w1, train_s=round(train_s, 2))
        )
        if log is not None:
            log(f"  holdout {k} seed {seed} {method:8s} {sampler:8s} W1 {r.w1:.4f}  (train {train_s:.1f} s)")

    for k in settings.holdouts:
        train = full.without(k)
        add("baseline", "baseline", k, 0, baseline_holdout_w1(full, k, generator=torch.Generator().manual_seed(0)), 0.0)
        for seed in range(settings.seeds):
            for method in ("ot-cfm", "i-cfm", "sb-cfm"):
                t0 = time.perf_counter()
                model, _ = _train(method, train, settings, seed)
                train_s = time.perf_counter() - t0
                add(method, "ode", k, seed, holdout_w1(model, full, k, steps=settings.eval_steps), train_s)
                if method == "sb-cfm":
                    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
                    add(
                        method,
                        "sde",
                        k,
                        seed,
                        holdout_w1(model, full, k, steps=settings.eval_steps, sigma=settings.sb_sigma, generator=g),
                        train_s,
                    )
                if plots and seed == 0 and k == settings.holdouts[len(settings.holdouts) // 2]:
                    x0 = full.populations[0][:150].to(next(model.parameters()).device)
                    with torch.no_grad():
                        panels[method] = push(
                            model,
                            x0,
                            float(full.times[0]),
                            float(full.times[-1]),
                            knots=full.times.tolist(),
                            steps=settings.eval_steps,
                            return_trajectory=True,
                        )
    table = format_table(rows, settings, full.times.tolist())
    files = {"table": out / "table.md", "csv": _write_csv(rows, out / "results.csv")}
    atomic_write_text(files["table"], table + "\n")
    if plots and panels:
        files["trajectories"] = _plot(panels, full, settings, out / "trajectories.png")
    (out / "settings.txt").write_text("\n".join(f"{k} = {v}" for k, v in asdict(settings).items()) + "\n")
    return TrajectoryBenchResult(rows=rows, table=table, files=files)


def _plot(panels, full, settings: TrajectorySettings, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from flowmatch.plots._common import save_figure
    from flowmatch.plots.snapshots import plot_snapshot_trajectories

    k = settings.holdouts[len(settings.holdouts) // 2]
    paths = {}
    for method, res in panels.items():
        paths[method] = plot_snapshot_trajectories(
            res.trajectory.cpu(),
            res.times.cpu(),
            full,
            path.with_name(f"trajectories_{method}.png"),
            held_out=k,
            title=f"{method}, time point {k} held out (seed 0)",
        )
    # one overview figure stitched from the per-method images
    import matplotlib.image as mpimg

    imgs = [mpimg.imread(p) for p in paths.values()]
    fig = Figure(figsize=(6 * len(imgs), 6), dpi=100)
    FigureCanvasAgg(fig)
    for i, img in enumerate(imgs):
        ax = fig.add_subplot(1, len(imgs), i + 1)
        ax.imshow(img)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
