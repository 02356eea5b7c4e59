"""Prefetching training batches with their pairings: the coupling of steps k+1..k+q is solved in
worker threads while step k trains.

The pairing depends only on the data (x0, x1, cond) and on random numbers the coupling draws
(:meth:`flowmatch.couplings.Coupling.prepare`), never on the model, so it can be computed ahead.
Everything random is drawn in the calling (main) thread, in step order, from one generator: the
batches, then the coupling's own draws; only the thunk that builds the cost and runs the solver
goes to a worker. Hence the pairs of a prefetched run are exactly those of an inline run
(``workers=0``) with the same generator state, whatever the number of workers and the timing.
The expensive part of the thunk runs without the GIL (the auction kernel via ctypes, POT's emd,
torch ops), so one worker overlaps a full CPU core with training. What remains is the thunk's
Python steps: each may wait for the GIL while the training thread holds it, and slows that thread
in turn (an I-CFM step is measurably slower beside a thread solving exact OT back to back:
docs/benchmarks.md), which is why the exact couplings keep their per-batch Python short (one kernel call for
all blocks of :class:`~flowmatch.couplings.BlockOT`, NumPy views instead of torch calls for the
low-dimensional cost). Worker processes instead of threads were measured no faster (pickling the
batches and the pairs costs about what the GIL did).

An exception raised while drawing ahead (a failing source, or a KeyboardInterrupt) is held and
raised when its step comes, so it surfaces where it would inline.

Checkpoints: the generator runs up to ``depth`` steps ahead of training. :meth:`BatchPrefetcher.state`
is the generator state just after the last *consumed* step (recorded before each draw), which is
what a checkpoint must store; :meth:`BatchPrefetcher.rewind` drops the queued steps and puts that
state back, so an interrupted or resumed run redraws the same batches. The same holds for the
positions of stateful batch sources (``samplers``, a
:class:`~flowmatch.training.sources.SamplerStates`: a map-style Dataset's sampler), recorded
beside the generator state and returned by :meth:`BatchPrefetcher.sampler_state`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from flowmatch.couplings import Pairing
from flowmatch.data.batches import SequenceBatch

__all__ = ["StepBatch", "BatchPrefetcher", "auto_workers", "draw_step"]


@dataclass
class StepBatch:
    """One step's data: x0 (B, *dims), x1 (B, *dims), cond attached to x1 (or None), the
    pairing of x0 and x1 (None for the identity coupling) and, for padded sequences, the mask of
    x1's valid elements (None: all valid)."""

    x0: Tensor
    x1: Tensor
    cond: Any
    pairing: Pairing | None
    mask: Tensor | None = None

    def loss_kwargs(self) -> dict[str, Any]:
        """The keywords an objective's ``loss`` takes besides (model, x0, x1): the condition and
        the mask, each only when present (objectives without padding take no ``mask``)."""
        out: dict[str, Any] = {}
        if self.cond is not None:
            out["cond"] = self.cond
        if self.mask is not None:
            out["mask"] = self.mask
        return out


#: What a draw function returns: the step's batch (its pairing still None) and the coupling's
#: thunk (None: identity).
Drawn = tuple[StepBatch, "Callable[[], Pairing] | None"]


def draw_step(source: Callable[..., Any], target: Callable[..., Any], objective: Any, n: int, generator) -> Drawn:
    """One step's draws from ``generator``, in order: x1 with its condition (and mask) from
    ``target``, x0 from ``source`` (before x1, unless the source draws noise shaped like x1: a
    ``sample_like(x1, generator=)`` method, as padded sequences of a batch-dependent length need),
    then the coupling's random numbers (``objective.prepare_pairing``, where it has one).

    ``target`` returns a tensor, a pair ``(x1, cond)`` or a :class:`SequenceBatch`.
    """
    like = getattr(source, "sample_like", None)
    early: Any = source(n, generator=generator) if like is None else None
    drawn = target(n, generator=generator)
    cond, mask = None, None
    if isinstance(drawn, SequenceBatch):
        x1, cond, mask = drawn.x, drawn.cond, drawn.mask
    elif isinstance(drawn, tuple):  # a labelled target: (x1, cond), cond attached to x1
        x1, cond = drawn
    else:
        x1 = drawn
    x0 = like(x1, generator=generator) if like is not None else early
    prepare = getattr(objective, "prepare_pairing", None)
    thunk = None
    if prepare is not None:
        extra = {} if mask is None else {"mask": mask}
        thunk = prepare(x0, x1, cond, generator=generator, **extra)
    return StepBatch(x0, x1, cond, None, mask), thunk


@dataclass
class _Item:
    state_before: Tensor
    samplers_before: dict[str, Tensor]
    batch: StepBatch
    thunk: Callable[[], Pairing] | None
    future: Future | None


def auto_workers(coupling_is_identity: bool) -> int:
    """Default number of coupling workers: 1 when there is a pairing to compute and at least 2 CPUs
    (one trains, one solves the next steps' couplings), else 0 (inline).

    Measured with ``flowmatch bench coupling``: one worker beats inline while a second CPU is
    free, and is a wash while other jobs keep every CPU busy (docs/benchmarks.md). The results do not depend on it.
    """
    if coupling_is_identity:
        return 0
    return 1 if (os.cpu_count() or 1) >= 2 else 0


class BatchPrefetcher:
    """Draws step batches in order and solves their pairings ``depth`` steps ahead.

    Args:
        draw: called in the main thread, once per step, in step order; draws the step's batches
            and the coupling's random numbers from ``generator`` and returns
            ``(batch, thunk)`` (a :class:`StepBatch` without its pairing, and ``thunk()`` ->
            :class:`Pairing`, or None), e.g. :func:`draw_step`.
        generator: the generator ``draw`` uses; its state is recorded before every draw.
        workers: threads that run the thunks; 0 runs each thunk inline when its step comes.
        depth: steps drawn ahead (default ``workers + 1``, so a worker is never idle).
        limit: total number of steps to draw (None: unlimited); nothing is drawn past it, so the
            generator ends where an inline run leaves it.
        samplers: the positions of stateful batch sources (``get_state() -> dict``,
            ``set_state(dict)``), recorded and put back with the generator state; None: none.

    Use as a context manager (or call :meth:`close`) to stop the threads.
    """

    def __init__(
        self,
        draw: Callable[[], Drawn],
        generator: torch.Generator,
        *,
        workers: int = 1,
        depth: int | None = None,
        limit: int | None = None,
        samplers: Any = None,
    ):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        self.draw = draw
        self.generator = generator
        self.workers = workers
        self.depth = 0 if workers == 0 else (depth if depth is not None else workers + 1)
        self.limit = limit
        self.samplers = samplers
        self._drawn = 0  # steps drawn so far (queued or consumed)
        self._consumed = 0  # steps handed out by next() (the last one possibly still in progress)
        self._current_state: Tensor | None = None  # generator state before the step in progress
        self._current_samplers: dict[str, Tensor] = {}  # and the sampler positions
        self._queue: deque[_Item] = deque()
        self._pending: BaseException | None = None  # raised while drawing ahead; re-raised in order
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="flowmatch-coupling") if workers else None

    # ------------------------------------------------------------------ drawing
    def _can_draw(self) -> bool:
        return self.limit is None or self._drawn < self.limit

    def _samplers_now(self) -> dict[str, Tensor]:
        return self.samplers.get_state() if self.samplers is not None else {}

    def _set(self, state: Tensor, samplers: dict[str, Tensor]) -> None:
        self.generator.set_state(state)
        if self.samplers is not None:
            self.samplers.set_state(samplers)

    def _draw_one(self) -> _Item:
        state, samplers = self.generator.get_state(), self._samplers_now()
        batch, thunk = self.draw()
        future = self._pool.submit(thunk) if (self._pool is not None and thunk is not None) else None
        self._drawn += 1
        return _Item(state, samplers, batch, thunk, future)

    def _fill(self) -> None:
        while self._pending is None and len(self._queue) < self.depth and self._can_draw():
            state, samplers = self.generator.get_state(), self._samplers_now()
            try:
                item = self._draw_one()
            except BaseException as e:  # noqa: BLE001 - a source failed (or was interrupted) ahead
                # of its step: undo the partial draw and raise it when that step comes, as inline
                self._set(state, samplers)
                self._pending = e
                return
            self._queue.append(item)

    def next(self) -> StepBatch:
        """The next step's batch with its pairing (waits for the worker if it is not done)."""
        if not self._queue and not self._can_draw():
            raise RuntimeError(f"the prefetcher has drawn its limit of {self.limit} steps")
        self._consumed += 1
        if self._queue:
            item = self._queue.popleft()
            self._current_state, self._current_samplers = item.state_before, item.samplers_before
        else:
            self._current_state, self._current_samplers = self.generator.get_state(), self._samplers_now()
            if self._pending is not None:
                pending, self._pending = self._pending, None
                raise pending
            item = self._draw_one()
        self._fill()  # keep the workers busy before waiting on this step's pairing
        if item.future is not None:
            pairing = item.future.result()
        else:
            pairing = item.thunk() if item.thunk is not None else None
        return replace(item.batch, pairing=pairing)

    # ------------------------------------------------------------------ state
    def state(self) -> Tensor:
        """Generator state after the last step handed out by :meth:`next` (before any queued draw)."""
        return self._queue[0].state_before if self._queue else self.generator.get_state()

    def states(self) -> dict[str, Tensor]:
        """What a checkpoint stores of the draws: ``{"generator": state(), **sampler_state()}``."""
        return {"generator": self.state(), **self.sampler_state()}

    def sampler_state(self) -> dict[str, Tensor]:
        """The stateful sources' positions after the last step handed out (as :meth:`state`)."""
        return self._queue[0].samplers_before if self._queue else self._samplers_now()

    def rewind(self, *, include_current: bool = False) -> Tensor:
        """Drop the queued steps and put the generator back where they started.

        With ``include_current`` the last step handed out by :meth:`next` is undone too (it was
        interrupted), and the generator goes back to before its draws. Returns the state set.
        """
        undo = include_current and self._current_state is not None
        target = self._current_state if undo and self._current_state is not None else self.state()
        samplers = self._current_samplers if undo else self.sampler_state()
        if undo:
            self._consumed -= 1
            self._current_state = None
        for item in self._queue:
            if item.future is not None:
                item.future.cancel()
        self._queue.clear()
        self._pending = None
        self._drawn = self._consumed
        self._set(target, samplers)
        return target

    def close(self) -> None:
        """Stop the workers (queued steps are dropped; call :meth:`rewind` first to keep the state)."""
        for item in self._queue:
            if item.future is not None:
                item.future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
