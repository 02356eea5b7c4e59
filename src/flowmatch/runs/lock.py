"""One training at a time per run directory: an OS file lock held for the whole run.

Two trainings started into the same ``--out`` would otherwise both run and silently replace each
other's config, checkpoints, log and metrics. :class:`RunLock` takes an exclusive, non-blocking
``flock`` on ``RUN/.flowmatch-lock``; the second process gets :class:`RunDirBusy` (a ValueError,
so the CLI prints one line and exits 2) naming the holder's pid. The kernel releases the lock
when its holder exits, however it exits (``kill -9`` included), so a stale lock never blocks a
resume. The lock file itself stays in the directory (unlinking a lock file that another process
may have open would let two holders coexist).

``flowmatch train --nproc N`` takes the lock in the launching process and tells its torchrun
workers so through the environment (:data:`HELD_ENV`), so that restarted workers do not compete
with their own launcher. Locks are re-entrant within one process.

On systems without ``fcntl`` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "HELD_ENV", "RunDirBusy", "RunLock"]

LOCK_FILE = ".flowmatch-lock"
#: Environment variable naming the run directory whose lock a launching process holds for us.
HELD_ENV = "FLOWMATCH_RUN_LOCK_HELD"

#: Run directories this process holds (resolved path -> depth), for re-entrant locking.
_held: dict[Path, int] = {}


class RunDirBusy(ValueError):
    """Another process holds the run directory's lock."""


def _key(path: Path) -> Path:
    return path.resolve()


def held_by_launcher(run_dir: str | Path) -> bool:
    """Whether the process that launched this one holds ``run_dir``'s lock (see :data:`HELD_ENV`)."""
    held = os.environ.get(HELD_ENV)
    if not held:
        return False
    return Path(held).resolve() == _key(Path(run_dir))


class RunLock:
    """Context manager: hold ``run_dir``'s lock (creating the directory if needed).

    Raises :class:`RunDirBusy` when another process holds it. Entering it again in the same
    process (or in a worker whose launcher holds it) is a no-op.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._file: IO[str] | None = None
        self._key: Path | None = None

    def __enter__(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        key = _key(self.run_dir)
        if key in _held:
            _held[key] += 1
            self._key = key
            return self
        if fcntl is None or held_by_launcher(self.run_dir):
            return self
        f = open(self.run_dir / LOCK_FILE, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunDirBusy(
                f"run directory {str(self.run_dir)!r} is in use by another flowmatch process (pid {holder}); "
                "one training at a time per run directory: wait for it to finish or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        self._key = key
        _held[key] = 1
        return self

    def __exit__(self, *exc) -> None:
        if self._key is None:
            return
        _held[self._key] -= 1
        if _held[self._key] == 0:
            del _held[self._key]
            if self._file is not None:
                self._file.close()  # closing the descriptor releases the flock
                self._file = None
        self._key = None
