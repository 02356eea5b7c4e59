"""The training log: ``log.csv`` in the run directory, one row per logging window, and with
``log="tensorboard"`` the same rows as TensorBoard scalars (:mod:`flowmatch.training.tensorboard`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TextIO

from flowmatch._utils.io import atomic_write_text, write_error
from flowmatch.training.tensorboard import TENSORBOARD_DIR, TensorBoardLog

__all__ = ["LOG_COLUMNS", "LOG_BACKENDS", "RunLog", "open_log", "write_row"]

LOG_COLUMNS = ("step", "loss", "lr", "grad_norm", "elapsed_s")
#: Where a run logs: "csv" (log.csv) or "tensorboard" (log.csv and TensorBoard events beside it).
LOG_BACKENDS = ("csv", "tensorboard")


class RunLog:
    """The open ``log.csv`` (``csv``) and, when asked, the TensorBoard writer (``board``)."""

    def __init__(self, csv_file: TextIO, board: TensorBoardLog | None = None):
        self.csv = csv_file
        self.board = board

    @property
    def name(self) -> str:
        return self.csv.name

    def close(self) -> None:
        try:
            self.csv.close()
        finally:
            if self.board is not None:
                self.board.close()


def open_log(path: Path, keep_until: int | None = None, *, tensorboard: bool = False) -> RunLog:
    """Open ``path`` for appending rows after a fresh header.

    ``keep_until``: when resuming from the checkpoint of that step, the rows up to it are kept and
    the later ones (written after the checkpoint, before the interruption) dropped; None starts
    an empty log. The rewrite is atomic: a crash here keeps the old log whole. ``tensorboard``: also
    write each row to the events in ``tensorboard/`` beside ``path`` (those after ``keep_until``
    purged).
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
    board = None
    if tensorboard:
        purge = None if keep_until is None else keep_until + 1
        board = TensorBoardLog(path.parent / TENSORBOARD_DIR, purge_step=purge)
    try:
        return RunLog(open(path, "a", newline=""), board)
    except OSError as e:
        if board is not None:
            board.close()
        raise write_error(path, e) from None


def write_row(log: RunLog, row: list) -> None:
    """Append ``row`` (the values of LOG_COLUMNS) to the open log and flush it, and to TensorBoard
    as the numbers log.csv holds; a refused write (full disk) is the one-line ValueError of
    :func:`flowmatch._utils.io.write_error`."""
    try:
        csv.writer(log.csv).writerow(row)
        log.csv.flush()
    except OSError as e:
        raise write_error(log.name, e) from None
    if log.board is not None:
        log.board.scalars(int(row[0]), {k: float(v) for k, v in zip(LOG_COLUMNS[1:], row[1:])})
