"""The training log: ``log.csv`` in the run directory, one row per logging window."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TextIO

from flowmatch._utils.io import atomic_write_text, write_error

__all__ = ["LOG_COLUMNS", "open_log", "write_row"]

LOG_COLUMNS = ("step", "loss", "lr", "grad_norm", "elapsed_s")


def open_log(path: Path, keep_until: int | None = None) -> TextIO:
    """Open ``path`` for appending rows after a fresh header.

    ``keep_until``: when resuming from the checkpoint of that step, the rows up to it are kept and
    the later ones (written after the checkpoint, before the interruption) dropped; None starts
    an empty log. The rewrite is atomic: a crash here keeps the old log whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    if keep_until is not None and path.is_file():
        with open(path, newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            rows = [r for r in reader if r and int(r[0]) <= keep_until]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(LOG_COLUMNS)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    try:
        return open(path, "a", newline="")
    except OSError as e:
        raise write_error(path, e) from None


def write_row(log: TextIO, row: list) -> None:
    """Append ``row`` to the open log and flush it; a refused write (full disk) is the one-line
    ValueError of :func:`flowmatch._utils.io.write_error`."""
    try:
        csv.writer(log).writerow(row)
        log.flush()
    except OSError as e:
        raise write_error(log.name, e) from None
