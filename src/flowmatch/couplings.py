"""Couplings: how a source batch x0 and a target batch x1 are paired before the path is drawn.

A coupling pi(x0, x1) is the joint law from which CFM draws its pairs (Tong et al. TMLR 2024,
Section 3). On a minibatch it returns a :class:`Pairing`: row indices into x0 and x1 such that
(x0[i0[k]], x1[i1[k]]) is the k-th pair.

- :class:`Independent` — pi = q0 x q1 (I-CFM, FM, VP-CFM, RF): the batches are already
  independent draws, so the identity pairing is a sample of the product coupling.
- :class:`ExactOT` — the exact minibatch OT plan for the squared Euclidean cost (OT-CFM). With
  equal batch sizes it is a permutation: every pair is distinct and the total cost is the optimum.
- :class:`Sinkhorn` — the entropic OT plan (SB-CFM), from which each x0_i draws its partner
  x1_j with probability pi(j | i).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from flowmatch._validate import check_choice, check_positive_float, check_positive_int
from flowmatch.transport import exact_ot_permutation, sinkhorn_log, squared_cost

__all__ = ["Pairing", "Coupling", "Independent", "ExactOT", "Sinkhorn", "get_coupling", "coupling_names"]


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


def _check_batches(x0: Tensor, x1: Tensor) -> None:
    if x0.dim() < 2 or x1.dim() < 2:
        raise ValueError(
            f"x0 and x1 must be batches of shape (B, *dims), got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"source and target samples must have the same shape, got {tuple(x0.shape[1:])} "
            f"and {tuple(x1.shape[1:])}"
        )
    if x0.shape[0] == 0 or x1.shape[0] == 0:
        raise ValueError("x0 and x1 must hold at least one sample each, got an empty batch")


class Coupling(ABC):
    """Pairs a source batch with a target batch; see the module docstring."""

    #: True when the pairing is the identity (no indexing needed).
    is_identity: bool = False

    @abstractmethod
    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        """Return the pairing of x0 (n, *dims) and x1 (m, *dims)."""

    def __call__(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None
    ) -> Pairing:
        _check_batches(x0, x1)
        return self.pair(x0, x1, generator=generator)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Independent(Coupling):
    """Product coupling q0 x q1: pairs x0_k with x1_k (batches drawn independently)."""

    is_identity = True

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        if x0.shape[0] != x1.shape[0]:
            raise ValueError(
                f"independent pairing needs batches of equal size, got {x0.shape[0]} and {x1.shape[0]}"
            )
        idx = torch.arange(x0.shape[0], device=x0.device)
        return Pairing(idx, idx.to(x1.device))


class ExactOT(Coupling):
    """Exact minibatch OT for the squared Euclidean cost, as a permutation (OT-CFM).

    pi* = argmin_{pi in Pi(q0_batch, q1_batch)} sum_ij pi_ij ||x0_i - x1_j||^2. For equal batch
    sizes the optimum is a permutation, returned as such: 100% distinct pairs, total cost equal to
    the optimum. (Sampling B pairs from the plan with replacement, as some implementations do,
    keeps only about 1 - 1/e ~ 63% distinct pairs.) See :func:`flowmatch.transport.exact_ot_permutation`.
    """

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        perm = exact_ot_permutation(x0, x1)
        return Pairing(torch.arange(x0.shape[0], device=x0.device), perm)


class Sinkhorn(Coupling):
    """Entropic OT coupling (SB-CFM): each x0_i draws its partner from pi(j | i).

    The plan solves min <pi, C> - epsilon H(pi) with C the squared Euclidean cost, by log-domain
    Sinkhorn on the data's device (:func:`flowmatch.transport.sinkhorn_log`). The regularisation
    is either ``reg`` times the mean of C (``reg_scale="mean"``, scale free) or ``reg`` itself in
    the cost's units (``reg_scale="absolute"``; SB-CFM uses epsilon = 2 sigma^2, the entropic OT
    that corresponds to a Brownian bridge of diffusion sigma, Tong et al. TMLR 2024 Section 3.4).
    Every x0_i appears exactly once; x1_j is drawn with probability pi_ij / a_i using ``generator``.
    """

    def __init__(
        self,
        reg: float = 0.05,
        *,
        reg_scale: str = "mean",
        max_iter: int = 1000,
        tol: float = 1e-6,
    ):
        self.reg = check_positive_float("reg", reg)
        self.reg_scale = check_choice("reg_scale", reg_scale, ("mean", "absolute"))
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = check_positive_float("tol", tol)

    def epsilon(self, cost: Tensor) -> float:
        """Absolute regularisation for this cost matrix."""
        if self.reg_scale == "absolute":
            return self.reg
        scale = float(cost.mean())
        return self.reg * scale if scale > 0 else self.reg

    def plan(self, x0: Tensor, x1: Tensor):
        """The entropic plan between the two batches, as a :class:`SinkhornResult`."""
        dtype = x0.dtype if x0.dtype in (torch.float32, torch.float64) else torch.float32
        cost = squared_cost(x0.detach().to(dtype), x1.detach().to(dtype))
        return sinkhorn_log(cost, self.epsilon(cost), max_iter=self.max_iter, tol=self.tol)

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        res = self.plan(x0, x1)
        # Row-conditional draws: x0_i keeps its place, x1 partner ~ pi(. | i).
        probs = res.plan / res.plan.sum(dim=1, keepdim=True)
        i1 = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return Pairing(torch.arange(x0.shape[0], device=x0.device), i1.to(x1.device))


_COUPLINGS = {"independent": Independent, "exact": ExactOT, "sinkhorn": Sinkhorn}


def coupling_names() -> list[str]:
    """Names accepted by :func:`get_coupling`."""
    return sorted(_COUPLINGS)


def get_coupling(name: str, **kwargs) -> Coupling:
    """Build a coupling by name: ``independent``, ``exact`` or ``sinkhorn`` (kwargs to its constructor)."""
    check_choice("coupling", name, tuple(_COUPLINGS))
    return _COUPLINGS[name](**kwargs)
