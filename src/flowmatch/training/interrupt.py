"""Stopping a training without losing work: Ctrl-C (SIGINT) and SIGTERM (what ``timeout``,
Slurm preemption and ``docker stop`` send) become a flag that the training loop reads at the end
of the step; it then writes a checkpoint and raises :class:`Interrupted`, so the run resumes
exactly where it stopped.

A second signal of the same kind acts at once (the previous handler is restored after the
first), except in torchrun workers: there the launcher forwards the signal it received to every
worker, and a terminal's Ctrl-C reaches them as well, so every signal stays deferred (the launcher
kills workers that do not stop within its shutdown timeout). Data-parallel ranks agree on the step
to stop at (:mod:`flowmatch.training.distributed`), so that they can write one checkpoint together.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["DeferredInterrupt", "Interrupted", "HANDLED_SIGNALS"]

#: The signals a training defers to the end of its step.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A training stopped by a signal after writing a checkpoint (``saved``) at ``step``.

    A subclass of KeyboardInterrupt, so code that handles Ctrl-C handles SIGTERM the same way.
    ``exit_code`` is the shell's convention, 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, step: int | None = None, saved: bool = False):
        self.signum = int(signum)
        self.step = step
        self.saved = saved
        super().__init__(self.describe())

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def describe(self) -> str:
        where = f" at step {self.step}" if self.step is not None else ""
        kept = "a checkpoint was written" if self.saved else "the latest checkpoint is kept"
        return f"interrupted by {self.signal_name}{where}; {kept}; continue with --resume"


#: What ``signal.getsignal`` returns and ``signal.signal`` takes.
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class DeferredInterrupt:
    """Context manager that turns SIGINT and SIGTERM into a flag (main thread only).

    ``requested`` is the number of the first signal received (0 for none). With ``keep_deferring``
    every later signal is deferred too; otherwise a second signal of the same kind acts at once.
    """

    def __init__(self, *, keep_deferring: bool = False) -> None:
        self.requested = 0
        self.keep_deferring = keep_deferring
        self._previous: dict[int, _Handler] = {}

    def _handler(self, signum, frame) -> None:
        if not self.requested:
            self.requested = signum
        if not self.keep_deferring and signum in self._previous:
            signal.signal(signum, self._previous.pop(signum))  # the second one acts at once

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED_SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
