"""Run directories: ``config.toml``, the marker that makes a directory recognisable as a run, and
the rules for starting, forcing and resuming a run.

A run directory holds only what flowmatch writes there (:data:`RUN_ENTRIES`) and the marker file
:data:`MARKER_FILE`, written when the run is created. ``--force`` therefore never deletes a
user's files: it clears a directory only when it carries the marker and holds nothing but run
entries, and refuses anything else with one line naming the first foreign entry. An empty
directory (or one holding only the lock file of :mod:`flowmatch.runs.lock`) counts as new.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from flowmatch._utils.io import atomic_write_text
from flowmatch.runs.config import RunConfig, dump_toml
from flowmatch.runs.lock import LOCK_FILE, RunLock
from flowmatch.training import distributed
from flowmatch.training.checkpoint import latest_checkpoint, read_state

__all__ = [
    "CONFIG_FILE",
    "MARKER_FILE",
    "RUN_ENTRIES",
    "RESUME_MAY_CHANGE",
    "check_run_dir",
    "prepare_run_dir",
    "claim_run_dir",
    "write_config",
    "foreign_entries",
]

CONFIG_FILE = "config.toml"
#: Written into every run directory flowmatch creates: what makes ``--force`` allowed to clear it.
MARKER_FILE = ".flowmatch-run"
#: Every entry flowmatch writes into a run directory (training, evaluation, plots, caches).
RUN_ENTRIES = frozenset(
    {
        CONFIG_FILE,
        MARKER_FILE,
        LOCK_FILE,
        "checkpoints",
        "log.csv",
        "metrics.json",
        "eval.json",
        "samples.png",
        "trajectories.png",
        "loss.png",
        "classifier.safetensors",
    }
)
#: Settings that may differ between a run and its resumption (the rest must match).
RESUME_MAY_CHANGE = frozenset(
    {
        "steps",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_solver",
        "eval_steps",
        "eval_guidance",
        "device",
        "coupling_workers",
        "bf16",
        "compile",
        "tf32",
        "max_bad_steps",
    }
)


def _is_run_entry(name: str) -> bool:
    # atomic writes leave ``.NAME.tmp-PID`` behind when killed mid-write (flowmatch._utils.io)
    return name in RUN_ENTRIES or (
        name.startswith(".") and ".tmp-" in name and name[1:].split(".tmp-")[0] in RUN_ENTRIES
    )


def foreign_entries(out: Path) -> list[str]:
    """Sorted names in ``out`` that flowmatch does not write into a run directory."""
    return sorted(p.name for p in out.iterdir() if not _is_run_entry(p.name))


def _is_empty(out: Path) -> bool:
    return all(p.name == LOCK_FILE for p in out.iterdir())


def check_run_dir(cfg: RunConfig, out_path: Path | None, *, resume: bool, force: bool) -> None:
    """The run directory rules, checked before anything is written: ``resume`` needs a run with a
    config and a checkpoint, and the same settings except :data:`RESUME_MAY_CHANGE`; otherwise
    ``out`` must be new or empty, or ``force`` given and ``out`` a flowmatch run directory that
    holds nothing else."""
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
        done = read_state(ck)["step"]
        if cfg.steps < done:
            raise ValueError(f"steps must be >= the checkpoint's step {done}, got {cfg.steps}")
        return
    if out_path is None or not out_path.exists():
        return
    if not out_path.is_dir():
        raise ValueError(f"the run directory must be a directory, got the file {str(out_path)!r}")
    if _is_empty(out_path):
        return
    if not force:
        raise ValueError(
            f"run directory {str(out_path)!r} exists and is not empty; pass --resume to continue it "
            "or --force to overwrite it"
        )
    if not (out_path / MARKER_FILE).is_file():
        raise ValueError(
            f"--force overwrites only flowmatch run directories, and {str(out_path)!r} has no {MARKER_FILE} "
            f"marker (it holds {_first(sorted(p.name for p in out_path.iterdir()))}); choose a new or empty --out"
        )
    foreign = foreign_entries(out_path)
    if foreign:
        raise ValueError(
            f"--force removes only what flowmatch wrote, and run directory {str(out_path)!r} also holds "
            f"{_first(foreign)}; move it away or choose another --out"
        )


def _first(names: list[str]) -> str:
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f"{names[0]!r}{more}"


def prepare_run_dir(cfg: RunConfig, out: Path, *, resume: bool, force: bool) -> None:
    """Make ``out`` ready to train into (rank 0, holding the run's lock): re-check the rules (the
    directory may have changed since the first check), clear a forced run's own entries (never
    the lock, never a foreign file), write the marker if missing and the config."""
    check_run_dir(cfg, out, resume=resume, force=force)
    out.mkdir(parents=True, exist_ok=True)
    if not resume and force:
        for p in out.iterdir():
            if p.name == LOCK_FILE or not _is_run_entry(p.name):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    if not (out / MARKER_FILE).is_file():
        stamp = {"flowmatch_run": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(out / MARKER_FILE, json.dumps(stamp) + "\n")
    write_config(cfg, out)


def write_config(cfg: RunConfig, out: Path) -> None:
    header = "flowmatch run configuration; repeat with: flowmatch train --config config.toml --out NEW_DIR"
    atomic_write_text(out / CONFIG_FILE, dump_toml(cfg.to_dict(), header))


@contextlib.contextmanager
def claim_run_dir(cfg: RunConfig, out: Path | None, *, resume: bool, force: bool) -> Iterator[None]:
    """Hold ``out`` for the duration of a training (every rank enters it; a collective under a
    process group): rank 0 takes the run's lock (:class:`~flowmatch.runs.lock.RunLock`) and
    prepares the directory (:func:`prepare_run_dir`); every rank raises the same one-line error
    when rank 0 could not, and waits until the directory is ready. ``out = None``: nothing."""
    if out is None:
        yield
        return
    main = distributed.info().is_main
    distributed.barrier()  # every rank has checked the directory before rank 0 changes it
    with contextlib.ExitStack() as stack:
        error: ValueError | None = None
        if main:
            try:
                stack.enter_context(RunLock(out))
                prepare_run_dir(cfg, out, resume=resume, force=force)
            except ValueError as e:
                error = e
            except OSError as e:  # read-only or full disk, permissions: one line naming the directory
                error = ValueError(f"cannot prepare run directory {str(out)!r}: {e.strerror or e}")
        if not distributed.all_ranks_true(error is None):
            raise error or ValueError(f"rank 0 could not prepare run directory {str(out)!r} (its error is above)")
        yield
