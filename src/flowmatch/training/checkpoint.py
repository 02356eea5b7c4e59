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

Reading checks every file: a state.json that is not a JSON object with an integer step, or a
safetensors file that is truncated or garbled, is a one-line ValueError naming the file. When
``latest`` names a checkpoint that is missing or damaged (a disk error, a copy cut short),
:func:`latest_checkpoint` falls back to the newest older checkpoint whose files all open, with a
:class:`CheckpointFallbackWarning` naming the one skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from flowmatch._utils.io import atomic_write_text, write_error

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "read_state",
    "load_weights",
    "CheckpointFallbackWarning",
]


class CheckpointFallbackWarning(UserWarning):
    """The checkpoint ``latest`` names is missing or damaged; an older whole one is used instead."""


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
    """Write ``ckpt`` atomically under ``directory`` and keep the newest ``keep`` checkpoints.

    An OSError (read-only or full disk) removes the partial temporary directory, keeps the
    previous checkpoints and ``latest`` as they were, and raises a one-line ValueError naming the
    checkpoint."""
    directory = Path(directory)
    name = f"step-{ckpt.step:08d}"
    tmp = directory / f".tmp-{name}-{os.getpid()}"
    final = directory / name
    try:
        _write_checkpoint(directory, tmp, final, ckpt)
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as its own I/O error
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(final, e) from None
    atomic_write_text(directory / "latest", name + "\n")
    for stale in directory.glob(".tmp-step-*"):  # left by a crash in an earlier write
        shutil.rmtree(stale, ignore_errors=True)
    old = sorted(p for p in directory.glob("step-*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def _write_checkpoint(directory: Path, tmp: Path, final: Path, ckpt: Checkpoint) -> None:
    directory.mkdir(parents=True, exist_ok=True)
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
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def read_state(path: str | Path) -> dict[str, Any]:
    """The state.json of the checkpoint directory ``path``, checked: a JSON object with an integer
    ``step`` >= 0; anything else is a ValueError naming the file."""
    path = Path(path)
    file = path / "state.json"
    if not file.is_file():
        raise ValueError(f"a checkpoint directory must contain state.json, got {str(path)!r}")
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint file {str(file)!r} must be readable JSON, got: {_reason(e)}") from None
    step = state.get("step") if isinstance(state, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        got = f"step {step!r}" if isinstance(state, dict) else f"a JSON {type(state).__name__}"
        raise ValueError(f"checkpoint file {str(file)!r} must hold an object with an integer step >= 0, got {got}")
    return state


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _tensor_files(path: Path, state: dict[str, Any]) -> list[Path]:
    """The safetensors files the checkpoint ``path`` must hold (ema: when it was written)."""
    names = ["model", "rng"] + (["optimizer"] if state.get("optimizer") is not None else [])
    names += ["ema"] if (path / "ema.safetensors").exists() else []
    return [path / f"{name}.safetensors" for name in names]


def _bad_tensor_file(file: Path, e: BaseException) -> ValueError:
    if isinstance(e, FileNotFoundError) or not file.exists():
        return ValueError(f"checkpoint file {str(file)!r} is missing")
    return ValueError(f"checkpoint file {str(file)!r} must be a whole safetensors file, got: {_reason(e)}")


def _check_whole(path: Path) -> None:
    """Open state.json and every safetensors file of ``path`` (its header and the extent it covers:
    safetensors rejects a truncated or garbled file); raise the ValueError naming the first bad one."""
    state = read_state(path)
    for file in _tensor_files(path, state):
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError) as e:
            raise _bad_tensor_file(file, e) from None


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest whole checkpoint directory, or None when there is none.

    Normally the one ``latest`` names. When that one is missing or damaged, the newest other
    ``step-*`` directory whose files all open, with a :class:`CheckpointFallbackWarning` naming the
    one skipped; when every checkpoint is damaged, the ValueError of the one ``latest`` names.
    """
    directory = Path(directory)
    pointer = directory / "latest"
    if not pointer.is_file():
        return None
    try:
        named = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError):
        named = ""
    first = directory / named if named and "/" not in named else None
    others = sorted((p for p in directory.glob("step-*") if p.is_dir() and p != first), reverse=True)
    # why the newest checkpoint was not used (None: it was)
    skipped = None if first is not None else f"checkpoint pointer {str(pointer)!r} names no checkpoint ({named!r})"
    damage: ValueError | None = None
    for path in ([first] if first is not None else []) + others:
        named_by = f" (named by {str(pointer)!r})" if path == first else ""
        if not (path / "state.json").is_file():  # missing, or a directory that never got its state.json
            why = "does not exist" if not path.exists() else "has no state.json"
            skipped = skipped or f"checkpoint {str(path)!r}{named_by} {why}"
            continue
        try:
            _check_whole(path)
        except ValueError as e:
            skipped = skipped or f"checkpoint {str(path)!r}{named_by} is damaged: {e}"
            damage = damage or e
            continue
        if skipped is not None:
            warnings.warn(
                f"{skipped}; using the newest whole checkpoint {str(path)!r} instead",
                CheckpointFallbackWarning,
                stacklevel=1,
            )  # one location: shown once per message
        return path
    if damage is not None:
        raise damage
    return None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory (or a run's ``checkpoints/`` folder: its latest whole one).

    Every file is checked: a damaged one is a ValueError naming it.
    """
    path = Path(path)
    if (path / "latest").is_file():
        found = latest_checkpoint(path)
        if found is None:
            raise ValueError(f"checkpoint pointer {str(path / 'latest')!r} names no complete checkpoint")
        path = found
    state = read_state(path)

    def tensors(file: Path) -> dict[str, torch.Tensor]:
        try:
            return load_file(str(file))
        except (SafetensorError, OSError) as e:
            raise _bad_tensor_file(file, e) from None

    opt_meta = state.pop("optimizer", None)
    optimizer = None
    if opt_meta is not None:
        optimizer = _unflatten_optimizer(tensors(path / "optimizer.safetensors"), opt_meta)
    ema_path = path / "ema.safetensors"
    return Checkpoint(
        step=int(state.pop("step")),
        model=tensors(path / "model.safetensors"),
        optimizer=optimizer,
        ema=tensors(ema_path) if ema_path.is_file() else None,
        rng=tensors(path / "rng.safetensors"),
        state=state,
        path=path,
    )


def load_weights(module: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """``module.load_state_dict(tensors)``, after checking that ``tensors`` (read from ``source``)
    hold exactly the module's parameters and buffers, each of the module's shape: a mismatch is a
    ValueError naming the first differing entry and both shapes (torch's error lists them all)."""
    own = module.state_dict()
    where = f"the weights in {str(source)!r}"
    missing = [k for k in own if k not in tensors]
    extra = [k for k in tensors if k not in own]
    more = lambda names: f" (and {len(names) - 1} more)" if len(names) > 1 else ""  # noqa: E731
    if missing:
        raise ValueError(
            f"{where} must hold every parameter of the model, but {missing[0]!r} is missing{more(missing)}; "
            "were they saved with other model settings?"
        )
    if extra:
        raise ValueError(
            f"{where} must hold only the model's parameters, but they hold {extra[0]!r}{more(extra)}, "
            "which the model does not have; were they saved with other model settings?"
        )
    for k, v in own.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ValueError(
                f"{where} must have the model's shapes, but {k!r} is {tuple(tensors[k].shape)} there "
                f"and {tuple(v.shape)} in the model; were they saved with other model settings?"
            )
    module.load_state_dict(tensors)
