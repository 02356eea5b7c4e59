"""Evaluation of the 2D benchmark's cells (:mod:`flowmatch.bench.paper2d`): the evaluation sets of
a task and seed (``n_eval`` points per distribution, the test part of a split drawn as the paper's
and independent of the training draw), their sampling floor and W2^2(x0, x1) cached in
``cells/<task>/eval-seed<k>.json``, and the metrics of one model on them."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.io import write_json
from flowmatch.bench.paper2d_setup import EVAL_VERSION, FLOOR_SEED_OFFSET, Paper2DSettings, Task
from flowmatch.data import resolve_distribution
from flowmatch.metrics import w2
from flowmatch.metrics.evaluate import evaluate_model, w2_at_steps, w2_sampling_floor
from flowmatch.runs.run import build_data

__all__ = ["EvalSets", "eval_sets", "cached_floor", "evaluate_cell", "is_evaluated"]


@dataclass
class EvalSets:
    """The evaluation sets of a task and seed, their sampling floor and W2^2(x0, x1) (the NPE's
    denominator): shared by every method, computed once."""

    x0: Tensor
    x1: Tensor
    floor: float
    w2sq: float


def _eval_json(out: Path, task: Task, seed: int) -> Path:
    return out / "cells" / task.key / f"eval-seed{seed}.json"


def _eval_json_settings(s: Paper2DSettings) -> dict[str, Any]:
    return {"n_train": s.n_train, "n_eval": s.n_eval, "protocol": "paper", "version": EVAL_VERSION}


def _saved_eval(out: Path, task: Task, seed: int, s: Paper2DSettings) -> dict[str, Any] | None:
    """The cached floor and W2^2 of a task and seed when computed under these settings; else None."""
    path = _eval_json(out, task, seed)
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved if saved.get("settings") == _eval_json_settings(s) else None


def eval_sets(out: Path, task: Task, seed: int, s: Paper2DSettings, force: bool) -> EvalSets:
    """The evaluation sets of a task and seed; the floor and W2^2 are cached in
    cells/<task>/eval-seed<k>.json."""
    data = build_data(s.eval_run_config(task, seed))
    x0, x1 = data.source.test, data.target.test
    saved = None if force else _saved_eval(out, task, seed, s)
    if saved is not None:
        return EvalSets(x0, x1, float(saved["w2_floor"]), float(saved["w2sq_source_target"]))
    g = torch.Generator().manual_seed(seed + FLOOR_SEED_OFFSET)
    floor = w2_sampling_floor(resolve_distribution(task.target), x1, n_train=s.n_train, protocol="paper", generator=g)
    w2sq = w2(x0, x1) ** 2
    write_json(
        _eval_json(out, task, seed), {"settings": _eval_json_settings(s), "w2_floor": floor, "w2sq_source_target": w2sq}
    )
    return EvalSets(x0, x1, floor, w2sq)


def cached_floor(out: Path, task: Task, seed: int, s: Paper2DSettings) -> float:
    """The floor of a task and seed from its eval-seed<k>.json; NaN when not computed yet."""
    saved = _saved_eval(out, task, seed, s)
    return math.nan if saved is None else float(saved["w2_floor"])


def is_evaluated(res: dict[str, Any], s: Paper2DSettings) -> bool:
    """Whether a finished cell's metrics were computed under this run's evaluation settings."""
    return res.get("evaluation") == s.eval_fingerprint()


def evaluate_cell(model: nn.Module, ev: EvalSets, s: Paper2DSettings, device: torch.device) -> dict[str, Any]:
    """Metrics of a model on the evaluation sets: W2, NPE, straightness and the dopri5 NFE and W2 on
    all ``n_eval`` points; the few-step W2 sweep on the first ``n_sweep``."""
    x0, x1 = ev.x0.to(device), ev.x1.to(device)
    t0 = time.perf_counter()
    rep = evaluate_model(
        model,
        x0,
        x1,
        solver="euler",
        steps=s.eval_steps,
        dopri5=True,
        atol=s.atol,
        rtol=s.rtol,
        w2sq_source_target=ev.w2sq,
        w1_mmd=False,
    )
    k = s.n_sweep
    sweep = w2_at_steps(model, x0[:k], x1[:k], list(s.euler_steps))
    metrics = {
        "w2": rep.w2,
        "npe": rep.npe,
        "nfe_dopri5": rep.nfe_dopri5,
        "w2_dopri5": rep.w2_dopri5,
        "straightness": rep.straightness,
        "n_eval": int(x1.shape[0]),
        "n_sweep": k,
    }
    for steps in s.euler_steps:
        metrics[f"w2_euler_{steps}"] = sweep[steps]
    metrics["eval_time_s"] = time.perf_counter() - t0
    return metrics
