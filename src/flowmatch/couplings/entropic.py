"""Relaxed couplings: entropic OT (:class:`Sinkhorn`, SB-CFM), unbalanced entropic OT
(:class:`UnbalancedOT`) and exact partial OT (:class:`PartialOT`), the last two via POT."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_positive_float, check_positive_int
from flowmatch.couplings.base import Coupling, Pairing, check_batches
from flowmatch.couplings.exact import ExactOT
from flowmatch.couplings.sampling import SAMPLINGS, draw_sampling_noise, pairs_from_plan
from flowmatch.ot.assignment import solve_assignment
from flowmatch.ot.transport import (
    SinkhornWarning,
    partial_ot_plan,
    sinkhorn_log,
    squared_cost,
    unbalanced_sinkhorn_plan,
)

__all__ = ["Sinkhorn", "UnbalancedOT", "PartialOT"]


class _SampledPlan(Coupling):
    """A coupling that draws its pairs from a plan with ``self.sampling``: the sampling noise is
    drawn in :meth:`prepare` (caller's thread, step order), the plan is solved in ``_solve``."""

    sampling: str

    def prepare(
        self,
        x0: Tensor,
        x1: Tensor,
        *,
        cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Callable[[], Pairing]:
        self.check_mask_support(mask)
        check_batches(x0, x1)
        noise = draw_sampling_noise(self.sampling, x0.shape[0], x1.shape[0], generator)
        return partial(self._solve, x0, x1, noise)

    def pair(self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> Pairing:
        return self.prepare(x0, x1, generator=generator)()

    def _solve(self, x0: Tensor, x1: Tensor, noise) -> Pairing:
        raise NotImplementedError


class Sinkhorn(_SampledPlan):
    """Entropic OT coupling (SB-CFM): pairs drawn from the plan pi of min <pi, C> - epsilon H(pi).

    The plan comes from log-domain Sinkhorn with epsilon scaling on the data's device
    (:func:`flowmatch.ot.transport.sinkhorn_log`). The regularisation is either ``reg`` times the
    mean of C (``reg_scale="mean"``, scale free) or ``reg`` itself in the cost's units
    (``reg_scale="absolute"``; SB-CFM uses epsilon = 2 sigma^2, the entropic OT that corresponds
    to a Brownian bridge of diffusion sigma, Tong et al. TMLR 2024 Section 3.4).

    ``sampling`` (see :mod:`flowmatch.couplings.sampling`): ``rows`` (default; each x0_i keeps its place and
    draws its partner from pi(. | i)), ``sequential`` or ``gumbel`` (without replacement: a
    permutation, every pair distinct), ``round`` (equals exact OT), ``joint``. The random numbers
    come from ``generator`` before the plan is computed (:meth:`Coupling.prepare`).

    When Sinkhorn does not reach ``tol`` in ``max_iter`` iterations (epsilon far below the
    cost's scale), a :class:`~flowmatch.ot.transport.SinkhornWarning` says so and ``fallback``
    decides: ``"exact"`` (default) pairs by exact OT, the epsilon -> 0 limit of the plan;
    ``"plan"`` samples the unconverged plan anyway. The result is never NaN.

    ``gumbel`` and ``round`` never run Sinkhorn. They depend on the plan only through the score
    sum_i log P_is(i) of a permutation s, and with log P_ij = (f_i + g_j - C_ij) / epsilon + const
    the potentials add the same constant to every permutation's score: ``gumbel`` is exact OT of
    C / epsilon - G (G iid Gumbel), ``round`` exact OT of C. One assignment solve, the pairs of
    the converged plan, at any epsilon (no convergence to wait for, no fallback).
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

    def _solve(self, x0: Tensor, x1: Tensor, noise) -> Pairing:
        if self.sampling in ("gumbel", "round") and x0.shape[0] == x1.shape[0]:
            return self._solve_by_assignment(x0, x1, noise)
        res = self.plan(x0, x1, warn=False)
        if not res.converged:
            use_exact = self.fallback == "exact" and x0.shape[0] == x1.shape[0]
            warnings.warn(
                f"Sinkhorn did not converge: marginal L1 error {res.marginal_error:.3g} > tol "
                f"{self.tol:.3g} after {res.n_iter} iterations at epsilon={res.epsilon:.3g}; "
                + ("pairing by exact OT (the epsilon -> 0 limit) instead" if use_exact else "sampling the last plan")
                + " (raise max_iter or the regularisation)",
                SinkhornWarning,
                stacklevel=3,
            )
            if use_exact:
                return ExactOT().pair(x0, x1)
        i0, i1 = pairs_from_plan(res.log_plan, self.sampling, noise)
        return Pairing(i0.to(x0.device), i1.to(x1.device))

    def _solve_by_assignment(self, x0: Tensor, x1: Tensor, noise) -> Pairing:
        """``gumbel`` / ``round`` pairs as one assignment (see the class docstring)."""
        if self.sampling == "round":
            return ExactOT().pair(x0, x1)
        cost = squared_cost(x0.detach().double(), x1.detach().double()).cpu()
        perm = solve_assignment((cost / self.epsilon(cost) - noise[0]).numpy()).perm
        return Pairing(torch.arange(x0.shape[0], device=x0.device), torch.from_numpy(perm).to(x1.device))


class UnbalancedOT(_SampledPlan):
    """Unbalanced entropic OT coupling (POT): outliers may be left out instead of transported.

    The plan minimises <P, C> - epsilon H(P) + reg_m (KL(P 1 | a) + KL(P^T 1 | b))
    (:func:`flowmatch.ot.transport.unbalanced_sinkhorn_plan`; Chizat et al. 2018, as used for
    minibatch OT by Fatras et al. ICML 2021), with epsilon = ``reg`` times the mean cost
    (``reg_scale="mean"``) or ``reg`` itself, and ``reg_m`` in the same units. Pairs are drawn
    with ``sampling`` (default ``joint``: n pairs iid from P / sum P, so rows with little mass,
    the outliers, are rarely used).
    """

    def __init__(
        self,
        reg: float = 0.05,
        reg_m: float = 1.0,
        *,
        reg_scale: str = "mean",
        sampling: str = "joint",
        max_iter: int = 1000,
        tol: float = 1e-6,
    ):
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
        return unbalanced_sinkhorn_plan(
            cost, self.reg * scale, self.reg_m * scale, max_iter=self.max_iter, tol=self.tol
        )

    def _solve(self, x0: Tensor, x1: Tensor, noise) -> Pairing:
        plan = self.plan(x0, x1)
        if not float(plan.sum()) > 0:
            raise ValueError("the unbalanced plan has no mass; raise reg or reg_m")
        i0, i1 = pairs_from_plan(torch.log(plan), self.sampling, noise)
        return Pairing(i0.to(x0.device), i1.to(x1.device))


class PartialOT(Coupling):
    """Exact partial OT (POT): transport only a fraction ``mass`` of the batch, optimally.

    Solves min <P, C> over P >= 0 with P 1 <= 1/n, P^T 1 <= 1/n and total mass k / n, where
    k = round(mass n) (:func:`flowmatch.ot.transport.partial_ot_plan`). With these marginals the
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
