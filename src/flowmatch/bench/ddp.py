"""Data-parallel training on this machine's CPU: ``flowmatch bench ddp``.

Trains OT-CFM on N(0, I) -> moons (3x64 SELU MLP, AdamW 1e-3, the run defaults) for a fixed number
of steps and reports, per row, training steps per second (rank 0's wall clock over the whole fit)
and, on the held-out split, the normalised path energy NPE and W2 of Euler samples
(:func:`flowmatch.metrics.evaluate.evaluate_model`; Tong et al. TMLR 2024, Section 5.1):

- 1 process at batch b, and 1 process at batch 2b (one OT problem over 2b rows: the ideal);
- 2 processes (gloo, ``torchrun``) at b rows per rank (global batch 2b) with
  ``coupling_scope = local`` (two OT problems of b rows) and ``global`` (one of 2b rows, gathered);
- 2 processes of I-CFM at b rows per rank (no coupling: how curved independent pairs leave paths).

At equal per-rank batch, global coupling should straighten the paths (lower NPE) towards the
1-process batch-2b row, at the price of an all-gather and a 2b-row OT solve per step. Couplings are
solved inline (``coupling_workers = 0``) in every row, one torch thread per process. Mean ± std
over seeds. The 2-process rows run in one torchrun launch of this module as workers
(``python -m flowmatch.bench.ddp --worker ...``); the 1-process rows in the calling process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from flowmatch._utils.io import atomic_write_text, write_json
from flowmatch._utils.validate import check_positive_int

__all__ = ["DDPBenchSettings", "DDPBenchResult", "run_ddp_bench"]


@dataclass
class DDPBenchSettings:
    """What ``flowmatch bench ddp`` measures (defaults: ~5 minutes on a 2-core CPU)."""

    steps: int = 2000
    batch_size: int = 64  # rows per rank
    seeds: int = 2
    n_train: int = 10_000
    n_test: int = 1_000
    eval_steps: int = 100
    target: str = "moons"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seeds", "n_train", "n_test", "eval_steps"):
            setattr(self, name, check_positive_int(name, getattr(self, name)))
        if 2 * self.batch_size > self.n_train:
            raise ValueError(f"2 x batch_size must not exceed n_train {self.n_train}, got batch_size {self.batch_size}")

    @classmethod
    def quick(cls, **overrides: Any) -> DDPBenchSettings:
        """A smoke run (seconds of training): 30 steps, 16 rows per rank, 1 seed, small data."""
        base = cls(steps=30, batch_size=16, seeds=1, n_train=256, n_test=64, eval_steps=10)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class DDPBenchResult:
    table: str
    rows: list[dict[str, Any]]
    files: dict[str, Path]


#: (label, method, processes, coupling scope, rows per process as a multiple of b)
ROWS = (
    ("ot-cfm", 1, "local", 1),
    ("ot-cfm", 1, "local", 2),
    ("ot-cfm", 2, "local", 1),
    ("ot-cfm", 2, "global", 1),
    ("i-cfm", 2, "local", 1),
)


def _config(s: DDPBenchSettings, method: str, scope: str, global_batch: int, seed: int):
    from flowmatch.runs.config import RunConfig

    return RunConfig(
        source="gaussian",
        target=s.target,
        method=method,
        steps=s.steps,
        batch_size=global_batch,
        n_train=s.n_train,
        n_test=s.n_test,
        seed=seed,
        coupling_scope=scope,
        coupling_workers=0,
        log_every=s.steps,
        checkpoint_every=s.steps,
        eval_steps=s.eval_steps,
        device="cpu",
    )


def _train_and_eval(cfg) -> dict[str, float] | None:
    """Train ``cfg`` in memory (on every rank), evaluate on rank 0; None on the other ranks."""
    from flowmatch.metrics.evaluate import evaluate_model
    from flowmatch.runs.run import build_data, train_run
    from flowmatch.training import distributed

    trainer, result, _ = train_run(cfg, None, quiet=True, evaluate=False, plots=False)
    if not distributed.info().is_main:
        return None
    data = build_data(cfg)
    rep = evaluate_model(
        trainer.sampling_model, data.source.test, data.target.test, solver="euler", steps=cfg.eval_steps, dopri5=False
    )
    return {"steps_per_s": result.steps_per_s, "npe": rep.npe, "w2": rep.w2, "final_loss": result.final_loss}


def _row_key(method: str, nproc: int, scope: str, mult: int) -> str:
    return f"{method}/{nproc}/{scope}/{mult}"


def _worker(settings: dict[str, Any], out: str) -> int:
    """One torchrun worker: train the 2-process rows for every seed; rank 0 writes their results."""
    from flowmatch.training import distributed

    torch.set_num_threads(1)
    s = DDPBenchSettings(**settings)
    results: dict[str, list[dict[str, float]]] = {}
    with distributed.process_group("cpu") as dist:
        for method, nproc, scope, mult in ROWS:
            if nproc != dist.world_size:
                continue
            for seed in range(s.seeds):
                res = _train_and_eval(_config(s, method, scope, nproc * s.batch_size * mult, seed))
                if res is not None:  # rank 0 evaluates
                    results.setdefault(_row_key(method, nproc, scope, mult), []).append(res)
        if dist.is_main:
            atomic_write_text(Path(out), json.dumps(results))
    return 0


def _mean_std(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def run_ddp_bench(
    out: str | Path | None, settings: DDPBenchSettings, log: Callable[[str], None] | None = print
) -> DDPBenchResult:
    """Measure every row of :data:`ROWS`; write table.md and results.json into ``out`` (None: nowhere)."""
    from flowmatch.metrics.report import format_table
    from flowmatch.training import distributed

    say = log or (lambda _: None)
    torch.set_num_threads(1)
    results: dict[str, list[dict[str, float]]] = {}
    for method, nproc, scope, mult in ROWS:
        if nproc == 1:
            for seed in range(settings.seeds):
                say(f"1 process: {method}, batch {settings.batch_size * mult}, seed {seed}")
                cfg = _config(settings, method, scope, settings.batch_size * mult, seed)
                res = _train_and_eval(cfg)
                if res is not None:
                    results.setdefault(_row_key(method, nproc, scope, mult), []).append(res)
    say(f"2 processes (torchrun, gloo): {settings.seeds} seed(s) x local/global OT-CFM and I-CFM")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.json"
        code = distributed.launch(
            2, ["--worker", json.dumps(asdict(settings)), str(path)], module="flowmatch.bench.ddp"
        )
        if code != 0 or not path.is_file():
            raise RuntimeError(f"the 2-process benchmark workers failed with exit code {code}")
        results.update(json.loads(path.read_text()))
    rows = []
    for method, nproc, scope, mult in ROWS:
        runs = results[_row_key(method, nproc, scope, mult)]
        b = settings.batch_size * mult
        rows.append(
            {
                "method": method,
                "processes": str(nproc),
                "batch per process": str(b),
                "global batch": str(b * nproc),
                "coupling scope": "-" if nproc == 1 else scope,
                "OT problem": "-"
                if method == "i-cfm"
                else (f"{b * nproc} rows" if (nproc == 1 or scope == "global") else f"{nproc} x {b} rows"),
                "steps/s": _mean_std([r["steps_per_s"] for r in runs], ".0f"),
                "NPE": _mean_std([r["npe"] for r in runs], ".3f"),
                f"W2 (euler {settings.eval_steps})": _mean_std([r["w2"] for r in runs], ".3f"),
            }
        )
    table = format_table(rows)
    files: dict[str, Path] = {}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        header = (
            f"flowmatch bench ddp: {settings.steps} steps, N(0, I) -> {settings.target}, "
            f"{settings.seeds} seed(s), n_train {settings.n_train}, n_test {settings.n_test}\n\n"
        )
        files["table"] = out / "table.md"
        atomic_write_text(files["table"], header + table + "\n")
        files["results"] = out / "results.json"
        write_json(files["results"], {"settings": asdict(settings), "rows": rows, "runs": results})
    return DDPBenchResult(table, rows, files)


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m flowmatch.bench.ddp", description="worker of `flowmatch bench ddp` (started by torchrun)"
    )
    p.add_argument("--worker", nargs=2, metavar=("SETTINGS_JSON", "OUT"), required=True)
    a = p.parse_args(argv)
    return _worker(json.loads(a.worker[0]), a.worker[1])


if __name__ == "__main__":
    from flowmatch.training.distributed import exit_worker

    exit_worker(_main())
