"""Atomic checkpoints: safetensors for tensors, JSON for the rest.

Layout of ``<run>/checkpoints/``::

    step-00001000/             one directory per checkpoint, written under a temporary name
        model.safetensors      model weights
        ema.safetensors        EMA weights (when EMA is on)
        optimizer.safetensors  optimizer tensors (Adam moments, step counts)
        rng.safetensors        random generator states
        state.json             step, elapsed time, optimizer hyper-parameters, user metadata
    latest                     name of the newest complete checkpoint (replaced atomically)

A checkpoint directory is first written as ``.tmp-step-...`` and renamed when every file is on
disk; ``latest`` is updated after that by ``os.replace``. A crash at any point leaves either the
previous checkpoint or the new one as ``latest``, never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from flowmatch._utils.io import atomic_write_text

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "latest_checkpoint"]


@dataclass
class Checkpoint:
    """What a checkpoint holds. Tensors dicts map names to CPU tensors."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    ema: dict[str, torch.Tensor] | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    return {"state": state, "param_groups": meta["param_groups"]}


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in sd.items()}


def save_checkpoint(directory: str | Path, ckpt: Checkpoint, *, keep: int = 2) -> Path:
    """Write ``ckpt`` atomically under ``directory`` and keep the newest ``keep`` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step-{ckpt.step:08d}"
    tmp = directory / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_cpu(ckpt.model), str(tmp / "model.safetensors"))
    if ckpt.ema is not None:
        save_file(_cpu(ckpt.ema), str(tmp / "ema.safetensors"))
    opt_meta = None
    if ckpt.optimizer is not None:
        opt_tensors, opt_meta = _flatten_optimizer(ckpt.optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file(_cpu(ckpt.rng), str(tmp / "rng.safetensors"))
    state = {"step": ckpt.step, "optimizer": opt_meta, **ckpt.state}
    with open(tmp / "state.json", "w") as f:
        json.dump(state, f, indent=2)
    for p in tmp.iterdir():  # make the files durable before the rename publishes them
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
    final = directory / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(directory / "latest", name + "\n")
    for stale in directory.glob(".tmp-step-*"):  # left by a crash in an earlier write
        shutil.rmtree(stale, ignore_errors=True)
    old = sorted(p for p in directory.glob("step-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint directory, or None when there is none."""
    directory = Path(directory)
    pointer = directory / "latest"
    if not pointer.is_file():
        return None
    path = directory / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory (or a run's ``checkpoints/`` folder: its latest)."""
    path = Path(path)
    if (path / "latest").is_file():
        found = latest_checkpoint(path)
        if found is None:
            raise ValueError(f"checkpoint pointer {str(path / 'latest')!r} names no complete checkpoint")
        path = found
    if not (path / "state.json").is_file():
        raise ValueError(f"a checkpoint directory must contain state.json, got {str(path)!r}")
    with open(path / "state.json") as f:
        state = json.load(f)
    opt_meta = state.pop("optimizer", None)
    optimizer = None
    if opt_meta is not None:
        optimizer = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), opt_meta)
    ema_path = path / "ema.safetensors"
    return Checkpoint(
        step=int(state.pop("step")),
        model=load_file(str(path / "model.safetensors")),
        optimizer=optimizer,
        ema=load_file(str(ema_path)) if ema_path.is_file() else None,
        rng=load_file(str(path / "rng.safetensors")),
        state=state,
        path=path,
    )
