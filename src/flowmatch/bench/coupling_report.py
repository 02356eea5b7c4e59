"""The coupling benchmark's Markdown tables (:mod:`flowmatch.bench.coupling`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowmatch.ot.assignment import native_available

if TYPE_CHECKING:
    from flowmatch.bench.coupling_setup import CouplingBenchSettings

__all__ = ["format_tables"]


def _f(v: float, digits: int = 2) -> str:
    return "-" if v != v else f"{v:.{digits}f}"


def format_tables(rows, large_rows, quality_rows, s: CouplingBenchSettings) -> str:
    """The step-time table, then the large-batch and quality tables when they have rows."""
    out = [
        f"torch threads {s.threads}; medians of {s.repeats} interleaved repeats (ratios paired within a "
        f"repeat); CPU = process CPU time; exact solver "
        f"{'auction (compiled)' if native_available() else 'emd (no C compiler)'}",
        "",
    ]
    out += [
        "| dim | batch | method | ms/step | ratio to I-CFM | ratio - 1.2 | CPU ms/step | CPU ratio | "
        "coupling solve ms | distinct pairs | cost / emd optimum |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['dim']} | {r['batch']} | {r['method']} | {_f(r['step_ms'])} | {_f(r['ratio'])} | "
            f"{'-' if r['method'] == 'i-cfm' else _f(r['ratio'] - 1.2)} | {_f(r['cpu_ms'])} | "
            f"{_f(r['cpu_ratio'])} | {_f(r['solve_ms'])} | "
            f"{_f(r['distinct'] * 100, 1) + '%' if r['distinct'] == r['distinct'] else '-'} | "
            f"{_f(r['cost_vs_emd'], 7)} |"
        )
    if large_rows:
        out += [
            "",
            f"Large batches (2D N(0, I) -> moons), block coupling prefetched (coupling_workers={s.workers}):",
            "",
            "| batch | coupling | solve ms | cost / exact | exact solve ms | I-CFM ms/step | "
            "OT-CFM ms/step | ratio | cost matrix MiB (blocks; full n^2 float32) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in large_rows:
            out.append(
                f"| {r['batch']} | {r['coupling']} | {_f(r['solve_ms'], 0)} | {_f(r['cost_vs_exact'], 4)} | "
                f"{_f(r['exact_solve_ms'], 0)} | {_f(r['icfm_step_ms'])} | {_f(r['ot_step_ms'])} | "
                f"{_f(r['ratio'])} | {_f(r['cost_matrix_mib_blocks'], 1)}; "
                f"{_f(r['cost_matrix_mib_full_float32'], 0)} |"
            )
    if quality_rows:
        out += [
            "",
            f"Quality after equal training (N(0, I) -> moons, {s.quality_steps} steps, cosine lr, "
            f"{s.quality_seeds} seed(s), 2000 test points; mean ± std):",
            "",
            "| batch | coupling | W2 (Euler 100) | NPE | W2 1 step | W2 2 steps | W2 4 steps | train s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in quality_rows:
            out.append(
                f"| {r['batch']} | {r['coupling']} | "
                + " | ".join(f"{r[k]:.3f}±{r[k + '_std']:.3f}" for k in ("w2", "npe", "w2_1", "w2_2", "w2_4"))
                + f" | {r['train_s']:.0f} |"
            )
    return "\n".join(out)
