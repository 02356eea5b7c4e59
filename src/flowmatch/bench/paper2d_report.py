"""The 2D benchmark's report: one CSV row per run, the Markdown table (mean ± std over seeds,
published values beside ours, the sampling floor per task)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from flowmatch._utils.io import atomic_write_text
from flowmatch.bench.paper2d_setup import TASKS, Paper2DSettings
from flowmatch.bench.published import published_2d
from flowmatch.objectives import methods as method_registry

__all__ = ["format_paper2d_table", "result_row", "write_csv"]


def sinkhorn_note(res: dict[str, Any]) -> str:
    n = res.get("sinkhorn_not_converged", 0)
    return f", Sinkhorn unconverged at {n}/{res['settings']['steps']} steps" if n else ""


def result_row(res: dict[str, Any], floor: float) -> dict[str, Any]:
    c, st, m, t = res["cell"], res["settings"], res["metrics"], res["timing"]
    row = {
        "task": c["task"],
        "source": c["source"],
        "target": c["target"],
        "method": c["method"],
        "seed": c["seed"],
        "steps": st["steps"],
        "batch_size": st["batch_size"],
        "sigma": "" if st["sigma"] is None else st["sigma"],
        "n_train": st["n_train"],
        "n_test": st["n_test"],
    }
    row.update(m)
    row["evaluated_at"] = res.get("evaluated_at", "")
    row["w2_floor"] = floor
    for k in ("train_time_s", "steps_per_s", "pair_time_s", "pair_nfe", "parent_train_time_s", "total_time_s"):
        row[k] = t.get(k, "")
    row["final_loss"] = res.get("final_loss")
    row["sinkhorn_not_converged"] = res.get("sinkhorn_not_converged", 0)
    row["device"] = res.get("device", "")
    row["computed_at"] = res.get("computed_at", "")
    return row


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k, "")) for k in cols})
    return atomic_write_text(path, buf.getvalue())


def _mean_std(values: list[float], digits: int) -> str:
    vals = [float(v) for v in values if v is not None and v != "" and math.isfinite(float(v))]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return f"{mean:.{digits}f}±{std:.{digits}f}"


def format_paper2d_table(rows: list[dict[str, Any]], s: Paper2DSettings) -> str:
    """The Markdown report: one line per (task, method), mean ± sample std over seeds, with the
    [SF]2M Table 2 values beside ours and the sampling floor of each task."""
    if not rows:
        raise ValueError("format_paper2d_table needs at least one row, got none")
    sweep = [k for k in s.euler_steps if k != s.eval_steps]
    header = (
        ["task", "method", "seeds", f"W2 (Euler {s.eval_steps})", "W2 paper", "NPE", "NPE paper", "NFE dopri5"]
        + [f"W2 Euler {k}*" for k in sweep]
        + ["train s", "W2 floor"]
    )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"]), []).append(r)
    body = []
    for (task, method), rs in groups.items():
        label = TASKS[task].label
        pw, pn = published_2d(method, label, "w2"), published_2d(method, label, "npe")
        time_key = "total_time_s" if method == "2-rf" else "train_time_s"
        body.append(
            [
                label,
                method,
                str(len(rs)),
                _mean_std([r["w2"] for r in rs], 3),
                pw.format() if pw else "—",
                _mean_std([r["npe"] for r in rs], 3),
                pn.format() if pn else "—",
                _mean_std([r["nfe_dopri5"] for r in rs], 0),
            ]
            + [_mean_std([r[f"w2_euler_{k}"] for r in rs], 3) for k in sweep]
            + [_mean_std([r[time_key] for r in rs], 1), _mean_std([r["w2_floor"] for r in rs], 3)]
        )
    width = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, width)) + " |"

    seeds = sorted({r["seed"] for r in rows})
    sb = method_registry.spec("sb-cfm").default_sigma
    lines = [
        "# 2D benchmark (Tong et al. TMLR 2024, Table 2): flowmatch bench paper2d",
        "",
        f"Setup: {s.depth}x{s.hidden} SELU MLP, AdamW lr {s.lr:g} weight decay {s.weight_decay:g}, "
        f"batch {s.batch_size}, {s.steps} steps, sigma {s.sigma:g} (sb-cfm: its default {sb}, "
        f"rf/2-rf: 0); {s.n_train} train / {s.n_test} test "
        f"points per distribution (one draw split at random); seeds {', '.join(map(str, seeds))}."
        + (
            f" Evaluated weights: their exponential moving average (decay {s.ema_decay:g}; the paper "
            "evaluates the trained weights)."
            if s.ema_decay
            else ""
        ),
        f"Evaluation: {s.n_eval} points per distribution from an independent split drawn the same way. "
        f"W2: exact, evaluation sources pushed by Euler with {s.eval_steps} steps vs the evaluation "
        f"targets; NPE along the same trajectories; NFE of dopri5 (atol {s.atol:g}, rtol {s.rtol:g}); "
        f"*: W2 after k Euler steps on the first {s.n_sweep} evaluation points. "
        "Cells: mean±std (sample std) over seeds.",
        "",
        line(header),
        "|" + "|".join("-" * (w + 2) for w in width) + "|",
        *(line(b) for b in body),
        "",
        "W2 paper / NPE paper: Tong et al. AISTATS 2024 ([SF]2M), Table 2 (5 seeds, 10k test points; "
        "see flowmatch/bench/published.py). W2 depends on the test size: compare ours with the floor "
        f"column (W2 between the {s.n_eval} evaluation targets and an independent set drawn the same "
        "way), not with 0.",
    ]
    if any(r["method"] == "2-rf" for r in rows):
        lines.append(
            "2-rf is the 2-rectified flow (one reflow of rf, pairs by "
            f"{s.reflow_solver} at tol {s.reflow_tol:g}), set beside the papers' RF row; its "
            "train s counts rf's training, the pairs and the reflow training."
        )
    return "\n".join(lines) + "\n"
