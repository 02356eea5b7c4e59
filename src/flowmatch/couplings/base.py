"""The coupling interface: :class:`Pairing`, :class:`Coupling` (draw now, solve later) and the
product coupling :class:`Independent`.

:meth:`Coupling.prepare` draws, in the caller's thread and in order, every random number the
pairing needs (from ``generator``) and returns a thunk that does the rest (cost matrix, solver)
without touching any generator; ``coupling(x0, x1)`` is ``prepare(...)()``. The thunk is what
:mod:`flowmatch.training.prefetch` runs in worker threads ahead of training, and because the draws happen
first and in step order, prefetched pairs equal inline pairs for the same seed.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

__all__ = ["Pairing", "Coupling", "Independent"]


@dataclass(frozen=True)
class Pairing:
    """Indices of the pairs: x0[i0[k]] is paired with x1[i1[k]], for k < len(i0)."""

    i0: Tensor
    i1: Tensor

    def __len__(self) -> int:
        return int(self.i0.shape[0])

    def apply(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        """Return the paired batches (x0[i0], x1[i1])."""
        return x0[self.i0], x1[self.i1]


def check_batches(x0: Tensor, x1: Tensor) -> None:
    if x0.dim() < 2 or x1.dim() < 2:
        raise ValueError(f"x0 and x1 must be batches of shape (B, *dims), got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"source and target samples must have the same shape, got {tuple(x0.shape[1:])} and {tuple(x1.shape[1:])}"
        )
    if x0.shape[0] == 0 or x1.shape[0] == 0:
        raise ValueError("x0 and x1 must hold at least one sample each, got an empty batch")


def check_equal_sizes(x0: Tensor, x1: Tensor, what: str) -> None:
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"{what} needs batches of equal size, got {x0.shape[0]} and {x1.shape[0]}")


class Coupling(ABC):
    """Pairs a source batch with a target batch; see the module docstring."""

    #: True when the pairing is the identity (no indexing needed).
    is_identity: bool = False
    #: True when the pairing is a function of (x0, x1, cond) alone: nothing is drawn from the
    #: generator, so :meth:`prepare`'s thunk may run in another thread.
    deterministic: bool = False
    #: True when :meth:`pair` accepts ``cond`` (the condition attached to x1's rows).
    uses_cond: bool = False
    #: True when :meth:`pair` accepts ``mask`` (padded sequences: the valid elements of x1's rows,
    #: :mod:`flowmatch.data.masks`); other couplings refuse a mask rather than pair padding.
    uses_mask: bool = False

    @abstractmethod
    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        """Return the pairing of x0 (n, *dims) and x1 (m, *dims)."""

    def _pair(self, x0: Tensor, x1: Tensor, cond: Tensor | None, generator, mask: Tensor | None = None) -> Pairing:
        pair: Callable[..., Pairing] = self.pair
        extra: dict[str, Tensor | None] = {}
        if self.uses_cond:  # such a subclass's pair takes cond too
            extra["cond"] = cond
        if mask is not None:  # only for a coupling that uses_mask (checked in prepare)
            extra["mask"] = mask
        return pair(x0, x1, generator=generator, **extra)

    def check_mask_support(self, mask: Tensor | None) -> None:
        """A ValueError for a mask given to a coupling that cannot pair padded sequences."""
        if mask is not None and not self.uses_mask:
            raise ValueError(
                f"coupling {type(self).__name__} cannot pair padded sequences (a mask was given); "
                "use Independent or ExactOT (which compares sources with each target's valid frames only)"
            )

    def prepare(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Callable[[], Pairing]:
        """Draw this pairing's random numbers now; return a thunk that computes the pairing.

        The thunk draws nothing and is safe to run in another thread (the expensive part: cost
        matrix and solver). A deterministic coupling draws nothing; a coupling that draws but does
        not override this method computes its pairing here and returns it.
        """
        check_batches(x0, x1)
        self.check_mask_support(mask)
        if type(self).__call__ not in _DELEGATING_CALLS:  # a subclass with its own entry point
            takes_cond = "cond" in inspect.signature(self.__call__).parameters
            call: Callable[..., Pairing] = self.__call__
            done = call(x0, x1, generator=generator, cond=cond) if takes_cond else call(x0, x1, generator=generator)
            return lambda: done
        if self.deterministic:
            return partial(self._pair, x0, x1, cond, None, mask)
        done = self._pair(x0, x1, cond, generator, mask)
        return lambda: done

    def __call__(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        """The pairing of x0 (n, *dims) and x1 (m, *dims): ``prepare(x0, x1, generator=...)()``."""
        return self.prepare(x0, x1, generator=generator)()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def call_with_cond(
    self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None, cond: Tensor | None = None
) -> Pairing:
    """``__call__`` of couplings that use the condition: ``prepare(x0, x1, cond=...)()``.

    The matcher passes ``cond`` to a coupling whose ``__call__`` has it in its signature.
    """
    return self.prepare(x0, x1, cond=cond, generator=generator)()


_DELEGATING_CALLS = (Coupling.__call__, call_with_cond)


class Independent(Coupling):
    """Product coupling q0 x q1: pairs x0_k with x1_k (batches drawn independently)."""

    is_identity = True
    deterministic = True
    uses_mask = True

    def pair(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None, mask: Tensor | None = None
    ) -> Pairing:
        check_equal_sizes(x0, x1, "independent pairing")
        idx = torch.arange(x0.shape[0], device=x0.device)
        return Pairing(idx, idx.to(x1.device))
