"""Global coupling across data-parallel ranks: one OT problem over the batches of all ranks.

With N ranks of b rows each, a per-rank ("local") coupling solves N independent OT problems of
size b, so the pairs are only as straight as minibatch OT with batch b (TorchCFM issue 19). The
global coupling pairs the whole global batch B = N b instead:

1. every rank all-gathers x0 and x1 (rank order: rank r's rows are r b .. (r+1) b - 1),
2. every rank solves the SAME problem with the same solver on the same inputs,
3. rank r keeps pairs k = r b .. (r+1) b - 1 of the global pairing (for OT couplings whose
   pairing keeps x0 in place, its own x0 rows with their partners, wherever those came from).

The ranks need the same pairing, so the base coupling's own random numbers (Sinkhorn's sampling
noise, random blocks) must be equal on every rank without a second exchange. They are drawn from
a generator seeded identically on every rank: the hash of the gathered batches (bitwise equal on
all ranks after the all-gather) and of ``seed``. The seed is a function of the step's data, so it
has no state: checkpoints, exact resume and prefetched pairings (:mod:`flowmatch.training.prefetch`) work
unchanged. Deterministic bases (exact OT) draw nothing.

With one process (no process group) the wrapper is its base coupling, bit for bit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowmatch._utils import ranks as distributed
from flowmatch.couplings import Coupling, Pairing

__all__ = ["GlobalCoupling", "GatheredPairing", "shared_generator"]


@dataclass(frozen=True)
class GatheredPairing(Pairing):
    """This rank's pairs of a global pairing: ``x0[i0[k]]`` with ``x1[i1[k]]`` where x0, x1 are
    the gathered batches (N b, *dims) it carries; :meth:`apply` ignores the local batches it is
    given and returns the rank's b pairs."""

    x0: Tensor | None = None
    x1: Tensor | None = None

    def apply(self, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        if self.x0 is None or self.x1 is None:
            raise ValueError("a GatheredPairing must carry the gathered batches x0 and x1")
        return self.x0[self.i0], self.x1[self.i1]


def shared_generator(seed: int, *tensors: Tensor) -> torch.Generator:
    """A CPU generator seeded with a hash (BLAKE2b) of ``seed`` and the bytes of ``tensors``:
    identical on every rank that holds bitwise-identical tensors."""
    h = hashlib.blake2b(int(seed).to_bytes(8, "little", signed=False), digest_size=8)
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return torch.Generator().manual_seed(int.from_bytes(h.digest(), "little") >> 1)


class GlobalCoupling(Coupling):
    """Pairs the gathered batches of all ranks with ``base``; each rank gets its slice of the pairs.

    Args:
        base: the coupling solved on the global batch (e.g. :class:`~flowmatch.couplings.ExactOT`).
        seed: salt of the generator of the base's random numbers (see the module docstring).

    Every rank must call it at the same steps with batches of equal size b (a collective). The
    pairing returned is a :class:`GatheredPairing` of b pairs (a base with fewer or more pairs
    than N b, e.g. partial OT, is split into N nearly equal parts). Conditions are not supported
    (a one-line error): pair conditional runs per rank.

    Example (run under ``torchrun --nproc-per-node 2``)::

        fm = FlowMatcher(LinearPath(0.1), GlobalCoupling(ExactOT()))
        loss = fm.loss(ddp_model, x0_local, x1_local)   # pairs of one OT problem over both ranks
    """

    def __init__(self, base: Coupling, *, seed: int = 0):
        if not isinstance(base, Coupling):
            raise TypeError(f"base must be a Coupling, got {type(base).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.base = base
        self.seed = seed
        self.is_identity = base.is_identity
        self.deterministic = base.deterministic

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        return self.prepare(x0, x1, generator=generator)()

    def prepare(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Callable[[], Pairing]:
        """Gather the batches now (a collective) and draw the base's random numbers; return a
        thunk that solves the global problem and slices this rank's pairs (safe in a worker thread)."""
        self.check_mask_support(mask)
        if cond is not None:
            raise ValueError(
                "the global coupling does not take conditions; use coupling_scope 'local' "
                f"for conditional runs, got cond of shape {tuple(cond.shape)}"
            )
        dist = distributed.info()
        if dist.world_size == 1:
            return self.base.prepare(x0, x1, generator=generator)
        if x0.dim() < 2 or x0.shape != x1.shape:
            raise ValueError(
                f"the global coupling needs batches (b, *dims) of equal shape, got "
                f"{tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        b = x0.shape[0]
        x0g = distributed.all_gather_cat(x0)
        x1g = distributed.all_gather_cat(x1)
        g = None if self.base.deterministic else shared_generator(self.seed, x0g, x1g)
        solve = self.base.prepare(x0g, x1g, generator=g)
        rank, world = dist.rank, dist.world_size

        def thunk() -> Pairing:
            p = solve()
            if len(p) == world * b:
                sl = slice(rank * b, (rank + 1) * b)
                i0, i1 = p.i0[sl], p.i1[sl]
            else:
                i0 = torch.tensor_split(p.i0, world)[rank]
                i1 = torch.tensor_split(p.i1, world)[rank]
            return GatheredPairing(i0.to(x0g.device), i1.to(x1g.device), x0=x0g, x1=x1g)

        return thunk

    def __call__(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None, cond: Tensor | None = None
    ) -> Pairing:
        return self.prepare(x0, x1, cond=cond, generator=generator)()

    def __repr__(self) -> str:
        return f"GlobalCoupling({self.base!r})"
