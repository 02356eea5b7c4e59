"""Couplings: how a source batch x0 and a target batch x1 are paired before the path is drawn.

A coupling pi(x0, x1) is the joint law from which CFM draws its pairs (Tong et al. TMLR 2024,
Section 3). On a minibatch it returns a :class:`Pairing`: row indices into x0 and x1 such that
(x0[i0[k]], x1[i1[k]]) is the k-th pair.

- :class:`Independent` -- pi = q0 x q1 (I-CFM, FM, VP-CFM, RF): the batches are already
  independent draws, so the identity pairing is a sample of the product coupling.
- :class:`ExactOT` -- the exact minibatch OT plan for the squared Euclidean cost (OT-CFM). With
  equal batch sizes it is a permutation: every pair is distinct and the total cost is the optimum.
- :class:`ConditionalOT` -- exact OT for C = ||x0 - x1||^2 + lambda d(c0, c1), a cost that also
  charges condition differences.
- :class:`BlockOT` -- exact OT within blocks of a large batch (4096 to 16384 rows and more):
  memory and time of ``block_size``-sized problems, not of the full n x n one.
- :class:`Sinkhorn` -- the entropic OT plan (SB-CFM), sampled per row (with replacement across
  rows) or without replacement (``sampling=``).
- :class:`UnbalancedOT`, :class:`PartialOT` -- unbalanced entropic OT and exact partial OT (POT):
  mass that is expensive to move (outliers) is dropped.
- Label-restricted OT (pairs never cross labels, optimal within each label) is
  :class:`flowmatch.cond_coupling.WithinLabels` around any of these.

Two phases. :meth:`Coupling.prepare` draws, in the caller's thread and in order, every random
number the pairing needs (from ``generator``) and returns a thunk that does the rest (cost matrix,
solver) without touching any generator; ``coupling(x0, x1)`` is ``prepare(...)()``. The thunk is
what :mod:`flowmatch.prefetch` runs in worker threads ahead of training, and because the draws
happen first and in step order, prefetched pairs equal inline pairs for the same seed.

Sampling pairs from a plan P that is not a permutation (``sampling=``):

- ``"rows"`` -- each x0_i draws x1_j with probability P_ij / sum_j P_ij, independently (with
  replacement across rows). Keeps the x0 marginal exactly (each x0 once) and the conditional
  P(j | i); the x1 marginal only in expectation (repeated x1, about 63% distinct for a product plan).
- ``"sequential"`` -- rows in a uniformly random order, each draws from P(j | i) restricted to the
  columns not yet used (Gumbel-max with a used-column mask). A permutation: both batch marginals
  exact, every pair distinct; the first row follows P(j | i) exactly, later rows a renormalised
  restriction of it.
- ``"gumbel"`` -- perturb-and-MAP (Papandreou & Yuille 2011): the permutation maximising
  sum_i log P_is(i) + G_is(i) with iid Gumbel G (solved exactly by :mod:`flowmatch.assignment`).
  Both batch marginals exact; exact at the two limits (a sharp plan gives the OT permutation, the
  product plan a uniformly random permutation). For a Sinkhorn plan, log P_ij = (f_i + g_j -
  C_ij) / eps + const, so this is exact OT of the Gumbel-perturbed cost C - eps G.
- ``"round"`` -- the permutation of maximum sum_i log P_is(i) (deterministic). For a Sinkhorn plan
  that is exactly the OT permutation, whatever eps (same identity as above).
- ``"joint"`` -- n pairs drawn iid from P / sum P over all (i, j) (as TorchCFM does); the
  natural choice for an unbalanced plan, whose row masses differ.
"""

from __future__ import annotations

import inspect
import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from flowmatch._validate import check_choice, check_nonnegative_float, check_positive_float, check_positive_int
from flowmatch.assignment import SOLVERS, solve_assignment
from flowmatch.transport import (
    SinkhornWarning,
    centered_squared_cost,
    partial_ot_plan,
    sinkhorn_log,
    squared_cost,
    unbalanced_sinkhorn_plan,
)

__all__ = ["Pairing", "Coupling", "Independent", "ExactOT", "ConditionalOT", "BlockOT", "Sinkhorn", "UnbalancedOT",
           "PartialOT", "SAMPLINGS", "pairs_from_plan", "get_coupling", "coupling_names"]

#: How pairs are drawn from a plan that is not a permutation (see the module docstring).
SAMPLINGS = ("rows", "sequential", "gumbel", "round", "joint")


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


def _check_equal(x0: Tensor, x1: Tensor, what: str) -> None:
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

    @abstractmethod
    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        """Return the pairing of x0 (n, *dims) and x1 (m, *dims)."""

    def _pair(self, x0: Tensor, x1: Tensor, cond: Tensor | None, generator) -> Pairing:
        if self.uses_cond:
            return self.pair(x0, x1, generator=generator, cond=cond)
        return self.pair(x0, x1, generator=generator)

    def prepare(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Callable[[], Pairing]:
        """Draw this pairing's random numbers now; return a thunk that computes the pairing.

        The thunk draws nothing and is safe to run in another thread (the expensive part: cost
        matrix and solver). A deterministic coupling draws nothing; a coupling that draws but does
        not override this method computes its pairing here and returns it.
        """
        _check_batches(x0, x1)
        if type(self).__call__ not in _DELEGATING_CALLS:  # a subclass with its own entry point
            takes_cond = "cond" in inspect.signature(self.__call__).parameters
            done = self(x0, x1, generator=generator, cond=cond) if takes_cond else self(x0, x1, generator=generator)
            return lambda: done
        if self.deterministic:
            return partial(self._pair, x0, x1, cond, None)
        done = self._pair(x0, x1, cond, generator)
        return lambda: done

    def __call__(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        """The pairing of x0 (n, *dims) and x1 (m, *dims): ``prepare(x0, x1, generator=...)()``."""
        return self.prepare(x0, x1, generator=generator)()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def _call_with_cond(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None,
                    cond: Tensor | None = None) -> Pairing:
    """``__call__`` of couplings that use the condition: ``prepare(x0, x1, cond=...)()``.

    The matcher passes ``cond`` to a coupling whose ``__call__`` has it in its signature.
    """
    return self.prepare(x0, x1, cond=cond, generator=generator)()


_DELEGATING_CALLS = (Coupling.__call__, _call_with_cond)


class Independent(Coupling):
    """Product coupling q0 x q1: pairs x0_k with x1_k (batches drawn independently)."""

    is_identity = True
    deterministic = True

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        _check_equal(x0, x1, "independent pairing")
        idx = torch.arange(x0.shape[0], device=x0.device)
        return Pairing(idx, idx.to(x1.device))


def _cond_distance(cond: Tensor, device) -> Tensor:
    """(n, n) float64: 1[c_i != c_j] for labels, ||c_i - c_j||^2 for features (null rows apart)."""
    from flowmatch.conditioning import is_label, null_mask

    if is_label(cond):
        c = cond.to(device)
        return (c[:, None] != c[None, :]).double()
    flat = cond.detach().reshape(cond.shape[0], -1).to(device=device, dtype=torch.float64)
    null = null_mask(cond).to(device)
    flat = torch.where(null[:, None], torch.zeros_like(flat), flat)
    d = squared_cost(flat, flat)
    return d + (null[:, None] != null[None, :]).double()


class ExactOT(Coupling):
    """Exact minibatch OT for the squared Euclidean cost, as a permutation (OT-CFM).

    pi* = argmin_{pi in Pi(q0_batch, q1_batch)} sum_ij pi_ij C_ij with C_ij = ||x0_i - x1_j||^2.
    For equal batch sizes the optimum is a permutation, returned as such: 100% distinct pairs,
    total cost equal to the optimum. (Sampling B pairs from the plan with replacement, as some
    implementations do, keeps only about 1 - 1/e ~ 63% distinct pairs.)

    ``solver``: ``auto`` (the compiled epsilon-scaling auction, certified to 1e-12 relative, or
    POT's ``emd`` without a C compiler), ``auction``, ``emd`` or ``lsa`` (see
    :mod:`flowmatch.assignment`). The cost is :func:`~flowmatch.transport.centered_squared_cost`
    in the batches' dtype, solved in float64.
    """

    deterministic = True

    def __init__(self, solver: str = "auto"):
        self.solver = check_choice("solver", solver, SOLVERS)

    def cost(self, x0: Tensor, x1: Tensor, cond: Tensor | None = None) -> Tensor:
        """The (n, n) float64 CPU cost matrix this coupling minimises."""
        return centered_squared_cost(x0, x1).double().cpu()

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None,
             cond: Tensor | None = None) -> Pairing:
        _check_equal(x0, x1, "exact OT pairing")
        n = x0.shape[0]
        i0 = torch.arange(n, device=x0.device)
        if n == 1:
            return Pairing(i0, torch.zeros(1, dtype=torch.long, device=x1.device))
        perm = solve_assignment(self.cost(x0, x1, cond).numpy(), solver=self.solver).perm
        return Pairing(i0, torch.from_numpy(perm).to(x1.device))


class ConditionalOT(ExactOT):
    """Exact OT for a cost that mixes data and condition: C_ij = ||x0_i - x1_j||^2 + lambda d(c_i, c_j).

    The condition ``cond`` is attached to x1's rows (the matcher passes it); x0_i takes the
    condition c_i of its batch position (the convention of
    :class:`~flowmatch.cond_coupling.WithinLabels`: for noise sources, a random noise sample per
    position), and d is ||c_i - c_j||^2 for feature vectors, 1[c_i != c_j] for class labels (null
    conditions are 1 apart from every non-null one). lambda = ``cond_weight`` >= 0: 0 is plain
    exact OT; as lambda grows the plan pairs across conditions only when that saves more than
    lambda d in transport cost, and for labels it becomes OT within labels once lambda exceeds
    the largest cost difference. For a hard label restriction use ``WithinLabels(ExactOT())``.
    Without ``cond`` it is :class:`ExactOT`.
    """

    uses_cond = True
    __call__ = _call_with_cond

    def __init__(self, cond_weight: float = 1.0, *, solver: str = "auto"):
        super().__init__(solver)
        self.cond_weight = check_nonnegative_float("cond_weight", cond_weight)

    def cost(self, x0: Tensor, x1: Tensor, cond: Tensor | None = None) -> Tensor:
        cost = super().cost(x0, x1)
        if cond is not None and self.cond_weight > 0:
            if cond.shape[0] != x0.shape[0]:
                raise ValueError(f"cond must have one row per sample, got {cond.shape[0]} rows for {x0.shape[0]}")
            cost = cost + self.cond_weight * _cond_distance(cond, "cpu")
        return cost


def _principal_direction(a: Tensor, iters: int = 20) -> Tensor:
    """Top principal axis of the rows of a (n, d) centred matrix, by power iteration (deterministic)."""
    v = torch.ones(a.shape[1], dtype=a.dtype, device=a.device) / math.sqrt(a.shape[1])
    v = v + a.abs().mean(0) * 1e-3  # break the symmetry of an isotropic start deterministically
    for _ in range(iters):
        w = a.T @ (a @ v)
        norm = torch.linalg.vector_norm(w)
        if not torch.isfinite(norm) or norm == 0:
            break
        v = w / norm
    return v


class BlockOT(Coupling):
    """Exact OT within blocks of a large batch: a coupling for 4096 to 16384 rows (and beyond).

    The batch is cut into k = ceil(n / block_size) blocks of sizes differing by at most one; block
    b of x0 is paired with block b of x1 by exact OT (:class:`ExactOT`). Time and memory are
    those of k problems of ``block_size`` (k block_size^2 cost entries, never n^2); the plan is
    block diagonal. Partitions:

    - ``"random"`` (default): uniformly random blocks (drawn from the generator): exactly minibatch
      OT with batch ``block_size`` (a "minibatch of minibatches"), the coupling of training with
      smaller OT batches, which the paper finds saturates in quality from about 64 (TMLR Fig. D.2).
    - ``"sorted"``: both batches sorted by their projection on the top principal axis of the pooled,
      centred batch and cut into consecutive blocks (block b of x0 and of x1 hold the same quantile
      slab: the 1D OT of the projections). Deterministic and exact in 1D, but in 2D it forces
      slabs onto slabs: measured 27% above the exact optimum on N(0, I) -> moons (n = 2048,
      blocks of 256) where random blocks are 5% above (``flowmatch bench coupling``).

    A batch of at most ``block_size`` rows is paired by exact OT as a whole. Measured on
    N(0, I) -> moons (random blocks; batch 1024 / 4096): blocks of 64 cost 1.19 / 1.19 times the
    exact optimum, 128: 1.09 / 1.10, 256: 1.05 / 1.05, 512: 1.02 / 1.02, solved in 11, 16, 23, 33 ms
    at 1024 (exact: about 90 ms) and 46, 59, 89, 120 ms at 4096 (exact: 1.6 s). After equal
    training at batch 1024, blocks of 128 or 256 give W2 and NPE within 5% of exact full-batch OT.
    """

    def __init__(self, block_size: int = 256, *, partition: str = "random", solver: str = "auto"):
        self.block_size = check_positive_int("block_size", block_size)
        self.partition = check_choice("partition", partition, ("sorted", "random"))
        self.solver = check_choice("solver", solver, SOLVERS)
        self.deterministic = self.partition == "sorted"

    def prepare(self, x0: Tensor, x1: Tensor, *, cond: Tensor | None = None,
                generator: torch.Generator | None = None) -> Callable[[], Pairing]:
        _check_batches(x0, x1)
        _check_equal(x0, x1, "block OT pairing")
        n = x0.shape[0]
        orders = None
        if self.partition == "random" and n > self.block_size:
            orders = (torch.randperm(n, generator=generator, device="cpu"),
                      torch.randperm(n, generator=generator, device="cpu"))
        return partial(self._solve, x0, x1, orders)

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        return self.prepare(x0, x1, generator=generator)()

    def _solve(self, x0: Tensor, x1: Tensor, orders) -> Pairing:
        n = x0.shape[0]
        exact = ExactOT(self.solver)
        if n <= self.block_size:
            return exact.pair(x0, x1)
        if orders is None:
            a = x0.detach().reshape(n, -1).cpu().double()
            b = x1.detach().reshape(n, -1).cpu().double()
            m = 0.5 * (a.mean(0) + b.mean(0))
            v = _principal_direction(torch.cat([a - m, b - m]))
            o0 = torch.argsort(a @ v, stable=True)
            o1 = torch.argsort(b @ v, stable=True)
        else:
            o0, o1 = orders
        k = -(-n // self.block_size)
        i1 = torch.empty(n, dtype=torch.long)
        for r0, r1 in zip(torch.tensor_split(o0, k), torch.tensor_split(o1, k)):
            sub = exact.pair(x0[r0.to(x0.device)], x1[r1.to(x1.device)])
            i1[r0] = r1[sub.i1.cpu()]
        return Pairing(torch.arange(n, device=x0.device), i1.to(x1.device))


def _gumbel(shape, generator) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp(1e-300, 1.0 - 1e-16)))


def _draw_sampling_noise(sampling: str, n: int, m: int, generator) -> tuple | None:
    """Random numbers for :func:`pairs_from_plan`, drawn on the CPU in float64."""
    if sampling in ("rows", "joint"):
        return (torch.rand(n, generator=generator, dtype=torch.float64),)
    if sampling == "sequential":
        return torch.randperm(n, generator=generator), _gumbel((n, m), generator)
    if sampling == "gumbel":
        return (_gumbel((n, m), generator),)
    return None


def pairs_from_plan(log_plan: Tensor, sampling: str, noise: tuple | None = None) -> tuple[Tensor, Tensor]:
    """Indices (i0, i1) of pairs drawn from a plan given by its log (n, m), CPU, float64.

    ``sampling`` is one of :data:`SAMPLINGS` (see the module docstring for what each preserves);
    ``noise`` holds the random numbers it needs (uniforms for rows/joint, a row order and Gumbels
    for sequential, Gumbels for gumbel; None for round), so the function itself draws nothing.
    sequential, gumbel and round need n <= m (and n == m for gumbel and round).
    """
    check_choice("sampling", sampling, SAMPLINGS)
    lp = log_plan.detach().cpu().double()
    lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -745.0))  # log of a zero entry
    n, m = lp.shape
    if sampling == "rows":
        (u,) = noise
        probs = torch.softmax(lp, dim=1)
        cdf = torch.cumsum(probs, dim=1)
        i1 = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1).clamp_max(m - 1)
        return torch.arange(n), i1
    if sampling == "joint":
        (u,) = noise
        probs = torch.softmax(lp.reshape(-1), dim=0)
        cdf = torch.cumsum(probs, dim=0)
        flat = torch.searchsorted(cdf, u * cdf[-1]).clamp_max(n * m - 1)
        return flat // m, flat % m
    if n > m or (sampling in ("gumbel", "round") and n != m):
        raise ValueError(f"sampling={sampling!r} needs n <= m (n == m for gumbel/round), got {n} and {m}")
    if sampling == "sequential":
        order, g = noise
        scores = (lp + g).numpy().copy()
        i1 = np.empty(n, dtype=np.int64)
        for i in order.tolist():
            j = int(np.argmax(scores[i]))
            i1[i] = j
            scores[:, j] = -np.inf
        return torch.arange(n), torch.from_numpy(i1)
    score = lp + noise[0] if sampling == "gumbel" else lp
    perm = solve_assignment((-score).numpy()).perm
    return torch.arange(n), torch.from_numpy(perm)


class Sinkhorn(Coupling):
    """Entropic OT coupling (SB-CFM): pairs drawn from the plan pi of min <pi, C> - epsilon H(pi).

    The plan comes from log-domain Sinkhorn with epsilon scaling on the data's device
    (:func:`flowmatch.transport.sinkhorn_log`). The regularisation is either ``reg`` times the
    mean of C (``reg_scale="mean"``, scale free) or ``reg`` itself in the cost's units
    (``reg_scale="absolute"``; SB-CFM uses epsilon = 2 sigma^2, the entropic OT that corresponds
    to a Brownian bridge of diffusion sigma, Tong et al. TMLR 2024 Section 3.4).

    ``sampling`` (see the module docstring): ``rows`` (default; each x0_i keeps its place and
    draws its partner from pi(. | i)), ``sequential`` or ``gumbel`` (without replacement: a
    permutation, every pair distinct), ``round`` (equals exact OT), ``joint``. The random numbers
    come from ``generator`` before the plan is computed (:meth:`Coupling.prepare`).

    When Sinkhorn does not reach ``tol`` in ``max_iter`` iterations (epsilon far below the
    cost's scale), a :class:`~flowmatch.transport.SinkhornWarning` says so and ``fallback``
    decides: ``"exact"`` (default) pairs by exact OT, the epsilon -> 0 limit of the plan;
    ``"plan"`` samples the unconverged plan anyway. The result is never NaN.
    """

    def __init__(
        self,
        reg: float = 0.05,
        *,
        reg_scale: str = "mean",
        max_iter: int = 1000,
        tol: float = 1e-6,
        sampling: str = "rows",
        fallback: str = "exact",
    ):
        self.reg = check_positive_float("reg", reg)
        self.reg_scale = check_choice("reg_scale", reg_scale, ("mean", "absolute"))
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = check_positive_float("tol", tol)
        self.sampling = check_choice("sampling", sampling, SAMPLINGS)
        self.fallback = check_choice("fallback", fallback, ("exact", "plan"))
        self.deterministic = self.sampling == "round"

    def epsilon(self, cost: Tensor) -> float:
        """Absolute regularisation for this cost matrix."""
        if self.reg_scale == "absolute":
            return self.reg
        scale = float(cost.mean())
        return self.reg * scale if scale > 0 else self.reg

    def _cost(self, x0: Tensor, x1: Tensor) -> Tensor:
        dtype = x0.dtype if x0.dtype in (torch.float32, torch.float64) else torch.float32
        return squared_cost(x0.detach().to(dtype), x1.detach().to(dtype))

    def plan(self, x0: Tensor, x1: Tensor, *, warn: bool = True):
        """The entropic plan between the two batches, as a :class:`SinkhornResult`."""
        cost = self._cost(x0, x1)
        return sinkhorn_log(cost, self.epsilon(cost), max_iter=self.max_iter, tol=self.tol, warn=warn)

    def prepare(self, x0: Tensor, x1: Tensor, *, cond: Tensor | None = None,
                generator: torch.Generator | None = None) -> Callable[[], Pairing]:
        _check_batches(x0, x1)
        noise = _draw_sampling_noise(self.sampling, x0.shape[0], x1.shape[0], generator)
        return partial(self._solve, x0, x1, noise)

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        return self.prepare(x0, x1, generator=generator)()

    def _solve(self, x0: Tensor, x1: Tensor, noise) -> Pairing:
        res = self.plan(x0, x1, warn=False)
        if not res.converged:
            use_exact = self.fallback == "exact" and x0.shape[0] == x1.shape[0]
            warnings.warn(
                f"Sinkhorn did not converge: marginal L1 error {res.marginal_error:.3g} > tol "
                f"{self.tol:.3g} after {res.n_iter} iterations at epsilon={res.epsilon:.3g}; "
                + ("pairing by exact OT (the epsilon -> 0 limit) instead" if use_exact else
                   "sampling the last plan") + " (raise max_iter or the regularisation)",
                SinkhornWarning,
                stacklevel=3,
            )
            if use_exact:
                return ExactOT().pair(x0, x1)
        i0, i1 = pairs_from_plan(res.log_plan, self.sampling, noise)
        return Pairing(i0.to(x0.device), i1.to(x1.device))


class UnbalancedOT(Coupling):
    """Unbalanced entropic OT coupling (POT): outliers may be left out instead of transported.

    The plan minimises <P, C> - epsilon H(P) + reg_m (KL(P 1 | a) + KL(P^T 1 | b))
    (:func:`flowmatch.transport.unbalanced_sinkhorn_plan`; Chizat et al. 2018, as used for
    minibatch OT by Fatras et al. ICML 2021), with epsilon = ``reg`` times the mean cost
    (``reg_scale="mean"``) or ``reg`` itself, and ``reg_m`` in the same units. Pairs are drawn
    with ``sampling`` (default ``joint``: n pairs iid from P / sum P, so rows with little mass,
    the outliers, are rarely used).
    """

    def __init__(self, reg: float = 0.05, reg_m: float = 1.0, *, reg_scale: str = "mean",
                 sampling: str = "joint", max_iter: int = 1000, tol: float = 1e-6):
        self.reg = check_positive_float("reg", reg)
        self.reg_m = check_positive_float("reg_m", reg_m)
        self.reg_scale = check_choice("reg_scale", reg_scale, ("mean", "absolute"))
        self.sampling = check_choice("sampling", sampling, SAMPLINGS)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = check_positive_float("tol", tol)
        self.deterministic = self.sampling == "round"

    def plan(self, x0: Tensor, x1: Tensor) -> Tensor:
        """The unbalanced plan (n, m), float64 on the CPU."""
        cost = squared_cost(x0.detach().double(), x1.detach().double()).cpu()
        scale = float(cost.mean()) if self.reg_scale == "mean" and float(cost.mean()) > 0 else 1.0
        return unbalanced_sinkhorn_plan(cost, self.reg * scale, self.reg_m * scale,
                                        max_iter=self.max_iter, tol=self.tol)

    def prepare(self, x0: Tensor, x1: Tensor, *, cond: Tensor | None = None,
                generator: torch.Generator | None = None) -> Callable[[], Pairing]:
        _check_batches(x0, x1)
        noise = _draw_sampling_noise(self.sampling, x0.shape[0], x1.shape[0], generator)
        return partial(self._solve, x0, x1, noise)

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        return self.prepare(x0, x1, generator=generator)()

    def _solve(self, x0: Tensor, x1: Tensor, noise) -> Pairing:
        plan = self.plan(x0, x1)
        if not float(plan.sum()) > 0:
            raise ValueError("the unbalanced plan has no mass; raise reg or reg_m")
        i0, i1 = pairs_from_plan(torch.log(plan), self.sampling, noise)
        return Pairing(i0.to(x0.device), i1.to(x1.device))


class PartialOT(Coupling):
    """Exact partial OT (POT): transport only a fraction ``mass`` of the batch, optimally.

    Solves min <P, C> over P >= 0 with P 1 <= 1/n, P^T 1 <= 1/n and total mass k / n, where
    k = round(mass n) (:func:`flowmatch.transport.partial_ot_plan`). With these marginals the
    optimum is a partial permutation: k distinct pairs, the n - k most expensive points on each
    side (outliers) left out. The pairing has k pairs (fewer than the batch); deterministic.
    """

    deterministic = True

    def __init__(self, mass: float = 0.9):
        if isinstance(mass, bool) or not isinstance(mass, (int, float)) or not 0 < mass <= 1:
            raise ValueError(f"mass must be in (0, 1], got {mass!r}")
        self.mass = float(mass)

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        n, m = x0.shape[0], x1.shape[0]
        k = max(1, min(n, m, round(self.mass * n)))
        cost = squared_cost(x0.detach().double(), x1.detach().double()).cpu()
        plan = partial_ot_plan(cost, k / n) if k < min(n, m) or n != m else None
        if plan is None:  # full mass between equal batches: exact OT
            return ExactOT().pair(x0, x1)
        rows = torch.nonzero(plan.sum(1) > 0.5 / n).squeeze(1)
        i1 = plan[rows].argmax(1)
        return Pairing(rows.to(x0.device), i1.to(x1.device))


_COUPLINGS = {"independent": Independent, "exact": ExactOT, "conditional": ConditionalOT, "block": BlockOT, "sinkhorn": Sinkhorn,
              "unbalanced": UnbalancedOT, "partial": PartialOT}


def coupling_names() -> list[str]:
    """Names accepted by :func:`get_coupling`."""
    return sorted(_COUPLINGS)


def get_coupling(name: str, **kwargs) -> Coupling:
    """Build a coupling by name (kwargs to its constructor): ``independent``, ``exact``, ``conditional``, ``block``,
    ``sinkhorn``, ``unbalanced`` or ``partial``."""
    check_choice("coupling", name, tuple(_COUPLINGS))
    return _COUPLINGS[name](**kwargs)
