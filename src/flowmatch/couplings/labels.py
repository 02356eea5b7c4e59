"""Label-respecting couplings: pair source and target samples only within groups of equal condition.

For a class-conditional model the coupling must not change the law of x0 given the class: the
model learns v(x, t | c), which carries q0(x0 | c) to q1(x1 | c), and is sampled from
x0 ~ N(0, I) for every c. A minibatch OT plan over the whole batch sends each noise sample to the
closest image whatever its class, so the noise paired with class c is biased towards class c
(q0(x0 | c) != q0). Pairing within classes keeps it unbiased: the batch is split into the groups
of equal condition, the noise rows at the positions of group c form its source batch (a random
subset of iid noise, independent of c) and the base coupling (e.g. exact OT) pairs the group.
This is the conditional OT coupling used for class-conditional OT-CFM (e.g. Tong et al. TMLR 2024,
Section 5; Pooladian et al. ICML 2023 for multisample couplings).

:class:`WithinLabels` wraps any :class:`~flowmatch.couplings.Coupling` and takes the condition as
``cond`` of ``__call__``; :class:`~flowmatch.objectives.cfm.FlowMatcher` passes it to every coupling whose
``__call__`` accepts ``cond``. Rows of a floating condition form a group when they are equal (so a
continuous condition leaves every pair as drawn, the independent coupling).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flowmatch.couplings.base import Coupling, Pairing
from flowmatch.data.conditioning import check_cond, is_label, null_mask

__all__ = ["WithinLabels", "condition_groups"]


def _prepare(base: Coupling, x0: Tensor, x1: Tensor, generator) -> Callable[[], Pairing]:
    """``base.prepare`` (draws now, work later) where the coupling has it, else the pairing now."""
    prepare = getattr(base, "prepare", None)
    if prepare is not None:
        return prepare(x0, x1, generator=generator)
    done = base(x0, x1, generator=generator)
    return lambda: done


def condition_groups(cond: Tensor) -> Tensor:
    """Group id per row ``(B,)`` int64: rows with equal conditions share an id (null rows one id)."""
    if is_label(cond):
        return torch.unique(cond, return_inverse=True)[1]
    flat = cond.reshape(cond.shape[0], -1)
    null = null_mask(cond)
    flat = torch.where(null[:, None], torch.zeros_like(flat), flat)
    key = torch.cat([null[:, None].to(flat.dtype), flat], dim=1)
    return torch.unique(key, dim=0, return_inverse=True)[1]


class WithinLabels(Coupling):
    """Pairs x0_k and x1 only among the rows that share x1_k's condition, with ``base`` in each group.

    With labels ``c`` and group positions ``G_c = {k : c_k = c}``, the pairing of group c is
    ``base(x0[G_c], x1[G_c])`` (indices mapped back to the batch); x0 keeps its rows, x1 is
    permuted within groups, so ``cond[i1] == cond`` row by row: every label stays with its sample
    and every x0 lands at a position of the same label. Without ``cond`` it is ``base`` itself.
    The batches must have equal size and ``base`` must return one pair per x0 row.
    """

    def __init__(self, base: Coupling):
        if not isinstance(base, Coupling):
            raise TypeError(f"base must be a Coupling, got {type(base).__name__}")
        self.base = base
        self.is_identity = base.is_identity
        self.deterministic = getattr(base, "deterministic", False)

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        return self.base.pair(x0, x1, generator=generator)

    def prepare(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Callable[[], Pairing]:
        """Draw the random numbers of every group's pairing now (groups in the order of their
        condition), return a thunk that solves the groups and assembles the pairing (see
        :meth:`flowmatch.couplings.Coupling.prepare`)."""
        self.check_mask_support(mask)
        if cond is None:
            return _prepare(self.base, x0, x1, generator)
        if x0.dim() < 2 or x0.shape[1:] != x1.shape[1:]:
            raise ValueError(
                f"x0 and x1 must be batches (B, *dims) of the same sample shape, got {tuple(x0.shape)} "
                f"and {tuple(x1.shape)}"
            )
        if x0.shape[0] != x1.shape[0]:
            raise ValueError(
                f"label-restricted pairing needs batches of equal size, got {x0.shape[0]} and {x1.shape[0]}"
            )
        check_cond(cond, x1.shape[0])
        groups = condition_groups(cond).to(x1.device)
        parts = []
        for gid in range(int(groups.max()) + 1):
            pos = (groups == gid).nonzero().squeeze(1)
            if pos.numel() >= 2:
                parts.append((pos, _prepare(self.base, x0[pos.to(x0.device)], x1[pos], generator)))
        name = type(self.base).__name__

        def assemble() -> Pairing:
            i1 = torch.arange(x1.shape[0], device=x1.device)
            for pos, solve in parts:
                sub = solve()
                if len(sub) != pos.numel() or not torch.equal(sub.i0.cpu(), torch.arange(pos.numel())):
                    raise ValueError(
                        f"WithinLabels needs a base coupling that pairs every x0 row once, in order; {name} does not"
                    )
                i1[pos] = pos[sub.i1.to(x1.device)]
            return Pairing(torch.arange(x0.shape[0], device=x0.device), i1)

        return assemble

    def __call__(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None, cond: Tensor | None = None
    ) -> Pairing:
        return self.prepare(x0, x1, cond=cond, generator=generator)()

    def __repr__(self) -> str:
        return f"WithinLabels({self.base!r})"
