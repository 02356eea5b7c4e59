"""Atomic file writes shared by checkpoints, run directories and reports."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write", "atomic_write_text", "write_json", "write_error"]


def write_error(path: str | Path, err: Exception) -> ValueError:
    """The one-line error for a write of ``path`` that the OS refused (read-only file system, no
    space left, permission denied): names the file, the rule and the OS's reason."""
    reason = getattr(err, "strerror", None) or " ".join(str(err).split()) or type(err).__name__
    return ValueError(
        f"cannot write {str(path)!r}: {reason}; the output directory must be writable and have free space"
    )


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(binary_file)`` on a temporary file in ``path``'s directory, fsync, os.replace.

    An OSError (read-only or full disk) leaves ``path`` as it was, removes the temporary file and
    raises the ValueError of :func:`write_error`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise write_error(path, e) from None
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    return x


def write_json(path: str | Path, obj: Any) -> Path:
    """Write strict JSON atomically (NaN and Inf, which JSON lacks, become null)."""
    return atomic_write_text(path, json.dumps(_finite_or_none(obj), indent=2, allow_nan=False) + "\n")
