"""Few-step generation on class-conditional digits: ``flowmatch bench fewstep-digits``.

Each method is trained as a class-conditional digits run (:func:`flowmatch.runs.train_run`, in
memory) with the setting of issue 22's measurement (``--cond label --guidance-dropout 0.1``, 1000
steps of batch 128, AdamW 2e-3 with a cosine schedule, EMA 0.995), then sampled once per held-out
test image, with its label and guidance w = 1, from the same noise at 1, 2, 4, 20 and 100 function
evaluations: Euler steps of the velocity for ot-cfm, i-cfm and cfm-consistency, jumps of the
average velocity (:func:`flowmatch.sampling.average.sample_any`, solver ``average``) for meanflow,
ot-meanflow and shortcut. Scores: the accuracy of the project's digits classifier on the samples
and their Fréchet distance in its feature space, beside the real test images' (FD / real is the
ratio to the real test images' FD); training time beside each row.

Output directory: ``table.md``, ``results.csv`` and the classifier (trained once, reused by every
method: ``classifier/classifier.safetensors``).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from flowmatch._utils.io import atomic_write_text
from flowmatch.metrics.report import format_table
from flowmatch.objectives import methods
from flowmatch.runs.config import RunConfig
from flowmatch.runs.data import build_data
from flowmatch.runs.image import evaluate_image_model
from flowmatch.runs.run import train_run

__all__ = ["DigitsFewStepSettings", "DigitsFewStepResult", "run_fewstep_digits", "DIGITS_METHODS", "DIGITS_NFES"]

DIGITS_METHODS = ("ot-cfm", "i-cfm", "meanflow", "ot-meanflow", "shortcut", "cfm-consistency")
DIGITS_NFES = (1, 2, 4, 20, 100)
FIELDS = ["method", "nfe", "accuracy", "fd", "fd_real", "real_accuracy", "real_fd", "train_s"]


@dataclass(frozen=True)
class DigitsFewStepSettings:
    """Settings of the benchmark (defaults: issue 22's class-conditional digits measurement)."""

    methods: tuple[str, ...] = DIGITS_METHODS
    steps: int = 1000
    batch_size: int = 128
    lr: float = 2e-3
    ema_decay: float = 0.995
    guidance: float = 1.0
    unet_width: int = 32
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def quick(cls, **overrides) -> DigitsFewStepSettings:
        base = cls(methods=("ot-cfm", "meanflow"), steps=8, batch_size=32, unet_width=8)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class DigitsFewStepResult:
    rows: list[dict]
    table: str
    files: dict[str, Path]


def _check(settings: DigitsFewStepSettings) -> None:
    bad = [m for m in settings.methods if m not in DIGITS_METHODS]
    if bad or not settings.methods:
        raise ValueError(
            f"methods must be among {', '.join(DIGITS_METHODS)}, got {', '.join(settings.methods) or 'none'}"
        )


def _config(settings: DigitsFewStepSettings, method: str) -> RunConfig:
    return RunConfig(
        method=method,
        target="digits",
        cond="label",
        guidance_dropout=0.1,
        steps=settings.steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        lr_schedule="cosine",
        ema_decay=settings.ema_decay,
        unet_width=settings.unet_width,
        eval_guidance=settings.guidance,
        seed=settings.seed,
        device=settings.device,
        coupling_workers=0,
    )


def run_fewstep_digits(
    out: str | Path, settings: DigitsFewStepSettings, *, log: Callable[[str], None] | None = print
) -> DigitsFewStepResult:
    """Train every method once, score it at every NFE on the same test noise; write table.md and
    results.csv."""
    _check(settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for method in settings.methods:
        cfg = _config(settings, method)
        t0 = time.perf_counter()
        trainer, _, _ = train_run(cfg, None, quiet=True, evaluate=False, plots=False)
        train_s = time.perf_counter() - t0
        model = trainer.sampling_model.eval()
        data = build_data(cfg)
        solver = "average" if methods.spec(method).average_velocity else "euler"
        for nfe in DIGITS_NFES:
            rep = evaluate_image_model(
                model, data, cfg, out / "classifier", guidance=(settings.guidance,), solver=solver, steps=nfe
            )
            r = rep.rows[0]
            rows.append(
                dict(
                    method=method,
                    nfe=r.nfe,
                    accuracy=r.accuracy,
                    fd=r.fd,
                    fd_real=r.fd / rep.real_fd,
                    real_accuracy=rep.real_accuracy,
                    real_fd=rep.real_fd,
                    train_s=round(train_s, 1),
                )
            )
        if log is not None:
            mine = rows[-len(DIGITS_NFES) :]
            log(
                f"  digits {method:15s} "
                + "  ".join(f"NFE {r['nfe']}: acc {100 * r['accuracy']:.1f}% FD {r['fd']:.2f}" for r in mine)
                + f"  (train {train_s:.1f} s)"
            )
    table = format_digits_table(rows, settings)
    files = {"table": out / "table.md", "results": out / "results.csv"}
    atomic_write_text(files["table"], table + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(files["results"], buf.getvalue())
    return DigitsFewStepResult(rows, table, files)


def format_digits_table(rows: list[dict], settings: DigitsFewStepSettings) -> str:
    """One row per method: accuracy and FD / real at each NFE, the 1-NFE / 20-NFE FD ratio, time."""
    table = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = {r["nfe"]: r for r in rows if r["method"] == method}
        line = {"method": method}
        for k in DIGITS_NFES:
            line[f"acc @ {k}"] = f"{100 * mine[k]['accuracy']:.1f}%"
        for k in DIGITS_NFES:
            line[f"FD/real @ {k}"] = f"{mine[k]['fd_real']:.2f}"
        line["FD 1 / 20"] = f"{mine[1]['fd'] / mine[20]['fd']:.2f}"
        line["train s"] = f"{mine[1]['train_s']:.0f}"
        table.append(line)
    real = rows[0] if rows else None
    head = (
        f"class-conditional digits, {settings.steps} steps of batch {settings.batch_size}, guidance w = "
        f"{settings.guidance:g}, one sample per test image; Euler steps for ot-cfm, i-cfm and cfm-consistency, "
        "average-velocity jumps for meanflow, ot-meanflow and shortcut."
    )
    if real is not None:
        head += (
            f" Real test images: accuracy {100 * real['real_accuracy']:.1f}%, FD {real['real_fd']:.3f} "
            "(FD / real = 1.00)."
        )
    return head + "\n\n" + format_table(table)
