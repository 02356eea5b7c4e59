"""Run directories: ``config.toml`` and the rules for starting, forcing and resuming a run."""

from __future__ import annotations

import json
from pathlib import Path

from flowmatch._io import atomic_write_text
from flowmatch.checkpoint import latest_checkpoint
from flowmatch.config import RunConfig, dump_toml

__all__ = ["CONFIG_FILE", "RESUME_MAY_CHANGE", "check_run_dir", "write_config"]

CONFIG_FILE = "config.toml"
#: Settings that may differ between a run and its resumption (the rest must match).
RESUME_MAY_CHANGE = frozenset({"steps", "log_every", "checkpoint_every", "keep_checkpoints",
                               "eval_solver", "eval_steps", "eval_guidance", "device", "coupling_workers",
                               "bf16", "compile", "tf32"})


def check_run_dir(cfg: RunConfig, out_path: Path | None, *, resume: bool, force: bool) -> None:
    """The run directory rules of :func:`train_run`, checked before anything is written: ``resume``
    needs a run with a config and a checkpoint, and the same settings except :data:`RESUME_MAY_CHANGE`;
    otherwise ``out`` must be new or empty, or ``force`` given."""
    out = out_path
    if resume:
        if out_path is None or not (out_path / CONFIG_FILE).is_file():
            raise ValueError(f"cannot resume: run directory {str(out)!r} has no {CONFIG_FILE}")
        saved = RunConfig.from_toml(out_path / CONFIG_FILE)
        for name, value in saved.to_dict().items():
            if name not in RESUME_MAY_CHANGE and getattr(cfg, name) != value:
                raise ValueError(
                    f"cannot resume with a different {name}: the run has {value!r}, got {getattr(cfg, name)!r}"
                )
        ck = latest_checkpoint(out_path / "checkpoints")
        if ck is None:
            raise ValueError(f"cannot resume: no checkpoint in {str(out_path / 'checkpoints')!r}")
        done = int(json.loads((ck / "state.json").read_text())["step"])
        if cfg.steps < done:
            raise ValueError(f"steps must be >= the checkpoint's step {done}, got {cfg.steps}")
    elif out_path is not None and out_path.exists() and not out_path.is_dir():
        raise ValueError(f"the run directory must be a directory, got the file {str(out_path)!r}")
    elif out_path is not None and out_path.exists() and any(out_path.iterdir()) and not force:
        raise ValueError(
            f"run directory {str(out_path)!r} exists and is not empty; pass --resume to continue it "
            "or --force to overwrite it"
        )


def write_config(cfg: RunConfig, out: Path) -> None:
    header = "flowmatch run configuration; repeat with: flowmatch train --config config.toml --out NEW_DIR"
    atomic_write_text(out / CONFIG_FILE, dump_toml(cfg.to_dict(), header))
