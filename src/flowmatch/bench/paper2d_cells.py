"""The cells of the 2D benchmark (:mod:`flowmatch.bench.paper2d`): one (task, method, seed) trained,
saved, re-evaluated or read back from ``out/cells/<task>/<method>/seed<k>/``, through
:class:`CellStore`, which the driver and its worker processes (:mod:`.paper2d_jobs`) share."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowmatch._utils.io import write_json
from flowmatch.bench.paper2d_eval import EvalSets, eval_sets, evaluate_cell, is_evaluated
from flowmatch.bench.paper2d_report import sinkhorn_note
from flowmatch.bench.paper2d_setup import RESULT_VERSION, Paper2DResult, Paper2DSettings, Task
from flowmatch.ot.transport import SinkhornWarning
from flowmatch.runs.config import RunConfig
from flowmatch.runs.run import build_data, build_model, train_run
from flowmatch.training.reflow import reflow_pairs, train_on_pairs
from flowmatch.training.trainer import TrainerConfig, resolve_device

__all__ = ["CellStore", "cell_dir", "load_cell_model", "read_cell_result"]


# ------------------------------------------------------------------------------------- cells


def cell_dir(out: Path, task: str, method: str, seed: int) -> Path:
    return out / "cells" / task / method / f"seed{seed}"


def _save_model(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)


def load_cell_model(cfg: RunConfig, path: Path, device: torch.device) -> nn.Module:
    from safetensors.torch import load_file

    model = build_model(cfg, 2)
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def read_cell_result(cell: Path, expected: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """A finished cell's result when its model was trained with the ``expected`` settings; else
    None. (Its metrics may come from another evaluation protocol: see :func:`_evaluated`.)"""
    path = cell / "result.json"
    if force or not path.is_file():
        return None
    res = json.loads(path.read_text())
    saved = res.get("settings", {})
    saved = {k: saved.get(k) for k in expected}  # older results also held evaluation settings
    if res.get("version") != RESULT_VERSION or saved != expected:
        diff = sorted(k for k in expected if saved.get(k) != expected.get(k))
        key = diff[0] if diff else "version"
        raise ValueError(
            f"cell {str(cell)!r} was computed with {key}={saved.get(key)!r}, this run has "
            f"{key}={expected.get(key)!r}; use another --out, or --force to recompute"
        )
    return res


def _train_cell(
    out: Path,
    task: Task,
    method: str,
    seed: int,
    s: Paper2DSettings,
    cfg: RunConfig,
    data,
    parent: dict[str, Any] | None,
    timing: dict[str, Any],
):
    """Train the model of a cell: (model, TrainResult, device)."""
    if method == "2-rf":
        if parent is None:  # the caller computes or reuses the rf cell first
            raise RuntimeError("2-rf cell needs its rf parent cell, got None")
        device = resolve_device(s.device)
        rf = load_cell_model(cfg, cell_dir(out, task.key, "rf", seed) / "model.safetensors", device)
        t0 = time.perf_counter()
        pairs = reflow_pairs(
            rf, data.source.train.to(device), solver=s.reflow_solver, atol=s.reflow_tol, rtol=s.reflow_tol
        )
        timing["pair_time_s"] = time.perf_counter() - t0
        timing["pair_nfe"] = pairs.nfe
        tc = TrainerConfig(
            steps=s.steps,
            batch_size=s.batch_size,
            lr=s.lr,
            weight_decay=s.weight_decay,
            ema_decay=s.ema_decay,
            seed=seed,
            log_every=max(1, s.steps),
            checkpoint_every=s.steps,
            quiet=True,
        )
        res = train_on_pairs(rf, pairs, tc, device=device)
        timing["parent_train_time_s"] = parent["timing"]["train_time_s"]
        return res.model, res.train, device
    trainer, result, _ = train_run(cfg, None, quiet=True, evaluate=False, plots=False)
    return trainer.sampling_model.eval(), result, trainer.device


def _compute_cell(
    out: Path, task: Task, method: str, seed: int, s: Paper2DSettings, parent: dict[str, Any] | None, ev: EvalSets
) -> dict[str, Any]:
    cfg = s.run_config(task, method, seed)
    data = build_data(cfg)
    cell = cell_dir(out, task.key, method, seed)
    timing: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, result, device = _train_cell(out, task, method, seed, s, cfg, data, parent, timing)
    sinkhorn_warnings = 0
    for w in caught:  # count the (many, per-step) Sinkhorn warnings, pass the others on
        if issubclass(w.category, SinkhornWarning):
            sinkhorn_warnings += 1
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    timing["train_time_s"] = result.elapsed_s
    timing["steps_per_s"] = result.steps_per_s
    timing["total_time_s"] = result.elapsed_s + timing.get("pair_time_s", 0.0) + timing.get("parent_train_time_s", 0.0)
    metrics = evaluate_cell(model, ev, s, device)
    _save_model(model, cell / "model.safetensors")
    res_json = {
        "version": RESULT_VERSION,
        "cell": {"task": task.key, "method": method, "seed": seed, "source": task.source, "target": task.target},
        "settings": s.fingerprint(method),
        "evaluation": s.eval_fingerprint(),
        "metrics": metrics,
        "timing": timing,
        "final_loss": result.final_loss,
        "sinkhorn_not_converged": sinkhorn_warnings,
        "device": str(device),
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(cell / "result.json", res_json)  # last: its presence marks the cell finished
    return json.loads((cell / "result.json").read_text())


def _reevaluate(
    out: Path, task: Task, method: str, seed: int, s: Paper2DSettings, res: dict[str, Any], ev: EvalSets
) -> dict[str, Any] | None:
    """A finished cell's result with its metrics recomputed under this run's evaluation settings
    from its saved model (no retraining); None when the model file is missing."""
    cell = cell_dir(out, task.key, method, seed)
    path = cell / "model.safetensors"
    if not path.is_file():
        return None
    device = resolve_device(s.device)
    model = load_cell_model(s.run_config(task, method, seed), path, device)
    res = dict(
        res,
        metrics=evaluate_cell(model, ev, s, device),
        evaluation=s.eval_fingerprint(),
        evaluated_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    write_json(cell / "result.json", res)
    return res


class CellStore:
    """The finished, re-evaluated or newly computed cells of one ``out`` (in one process).

    ``get`` returns a cell's result, computing only what is missing (a 2-rf cell first gets its rf
    parent); each cell is logged and listed in ``result`` once, except the ``quiet`` ones (already
    reported by the worker processes that computed them).
    """

    def __init__(
        self,
        out: Path,
        s: Paper2DSettings,
        result: Paper2DResult,
        say: Callable[[str], None],
        *,
        force: bool,
        force_evals: bool,
        quiet: set[tuple[str, str, int]] | None = None,
    ) -> None:
        self.out, self.s, self.result, self.say = out, s, result, say
        self.force, self.force_evals, self.quiet = force, force_evals, quiet or set()
        self.done: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.computed: set[tuple[str, str, int]] = set()  # in this store: reread, never recomputed
        self.evals: dict[tuple[str, int], EvalSets] = {}

    def eval_sets(self, task: Task, seed: int) -> EvalSets:
        if (task.key, seed) not in self.evals:
            self.evals[(task.key, seed)] = eval_sets(self.out, task, seed, self.s, self.force_evals)
        return self.evals[(task.key, seed)]

    def get(self, task: Task, method: str, seed: int) -> dict[str, Any]:
        key = (task.key, method, seed)
        if key in self.done:
            return self.done[key]
        out, s, result = self.out, self.s, self.result
        say = (lambda _line: None) if key in self.quiet else self.say
        ev = self.eval_sets(task, seed)
        cell = cell_dir(out, task.key, method, seed)
        res = read_cell_result(cell, s.fingerprint(method), self.force and key not in self.computed)
        parent = self.get(task, "rf", seed) if method == "2-rf" else None
        if parent is not None and res is not None and (task.key, "rf", seed) in self.computed:
            res = None  # the parent changed: the reflow must be redone
        status = "cached"
        if res is not None and not is_evaluated(res, s):
            say(f"[paper2d] {task.key} {method} seed {seed}: re-evaluating the saved model ...")
            res = _reevaluate(out, task, method, seed, s, res, ev)
            if res is not None:
                result.reevaluated.append(key)
                status = "re-evaluated"
        if res is None:
            say(f"[paper2d] {task.key} {method} seed {seed}: training {s.steps} steps ...")
            res = _compute_cell(out, task, method, seed, s, parent, ev)
            self.computed.add(key)
            result.computed.append(key)
            status = "computed"
        elif status == "cached" and key not in self.quiet:
            result.reused.append(key)
        m, tm = res["metrics"], res["timing"]
        say(
            f"[paper2d] {task.key} {method} seed {seed}: W2 {m['w2']:.3f}  NPE {m['npe']:.3f}  "
            f"NFE {m['nfe_dopri5']}  train {tm['train_time_s']:.1f} s "
            f"({tm['steps_per_s']:.0f} steps/s){sinkhorn_note(res)} [{status}]"
        )
        self.done[key] = res
        return res
