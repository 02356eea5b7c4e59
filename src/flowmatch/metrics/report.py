"""Plain-text tables of evaluation results (what the CLI and the demo print)."""

from __future__ import annotations

from flowmatch.metrics.evaluate import EvalReport

__all__ = ["eval_row", "format_table"]


def eval_row(method: str, rep: EvalReport, train_s: float | None) -> dict[str, str]:
    """One table row: method, W2 of the evaluation solver, W2 and NFE of dopri5, NPE, train time."""
    return {
        "method": method,
        f"W2 ({rep.solver} {rep.steps})": f"{rep.w2:.4f}",
        "W2 (dopri5)": "-" if rep.w2_dopri5 is None else f"{rep.w2_dopri5:.4f}",
        "NFE (dopri5)": "-" if rep.nfe_dopri5 is None else str(rep.nfe_dopri5),
        "NPE": f"{rep.npe:.3f}",
        "train s": "-" if train_s is None else f"{train_s:.1f}",
    }


def format_table(rows: list[dict[str, str]]) -> str:
    """A Markdown table of rows that share their keys (the columns)."""
    if not rows:
        raise ValueError("format_table needs at least one row, got none")
    cols = list(rows[0])
    width = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}

    def line(r: dict[str, str]) -> str:
        return "| " + " | ".join(r[c].ljust(width[c]) for c in cols) + " |"

    sep = "|" + "|".join("-" * (width[c] + 2) for c in cols) + "|"
    return "\n".join([line({c: c for c in cols}), sep, *(line(r) for r in rows)])
