"""Optimal-transport solvers on minibatches: the exact assignment and log-domain Sinkhorn.

These are the numerical kernels behind :mod:`flowmatch.couplings`. Both use the squared
Euclidean cost C_ij = ||x0_i - x1_j||^2 on flattened samples, which is the cost whose optimal
coupling makes the conditional paths of OT-CFM straight (Tong et al. TMLR 2024, Section 3.2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import ot
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from flowmatch._validate import check_positive_float, check_positive_int

__all__ = [
    "squared_cost",
    "exact_ot_permutation",
    "SinkhornResult",
    "sinkhorn_log",
    "SinkhornWarning",
]


class SinkhornWarning(UserWarning):
    """Sinkhorn stopped before its marginals reached the requested tolerance."""


def squared_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """C_ij = ||x0_i - x1_j||^2 for x0 (n, *dims), x1 (m, *dims); returns (n, m), clamped at 0."""
    a = x0.reshape(x0.shape[0], -1)
    b = x1.reshape(x1.shape[0], -1)
    # ||a||^2 + ||b||^2 - 2 a.b is one matmul; clamp the small negative round-off.
    cost = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return cost.clamp_min_(0.0)


def exact_ot_permutation(x0: Tensor, x1: Tensor) -> Tensor:
    """Optimal assignment for the squared Euclidean cost between two equal-size batches.

    Solves min_P sum_ij P_ij ||x0_i - x1_j||^2 over doubly stochastic P (uniform weights 1/n).
    The optimum is attained at a permutation matrix (Birkhoff-von Neumann), so every x0_i is
    paired with exactly one x1_j and no pair repeats. Returns ``perm`` (n,) long, on x1's device,
    with x0_i paired to x1_perm[i].

    The network simplex of POT (``ot.emd``, Bonneel et al. 2011) is used in float64 on the CPU;
    it returns a vertex of the transport polytope, i.e. a permutation. If round-off ever yields a
    plan whose row maxima are not a permutation, the assignment is recomputed with SciPy's
    ``linear_sum_assignment`` on the same cost.
    """
    n = x0.shape[0]
    if x1.shape[0] != n:
        raise ValueError(
            f"exact OT pairing needs batches of equal size, got {n} source and {x1.shape[0]} target rows"
        )
    cost = squared_cost(x0.detach().double(), x1.detach().double()).cpu().numpy()
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=x1.device)
    w = np.full(n, 1.0 / n)
    plan = ot.emd(w, w, cost, numItermax=max(100_000, 50 * n * n))
    perm = plan.argmax(axis=1)
    if np.unique(perm).size != n:  # degenerate plan: fall back to a Hungarian-type solver
        _, perm = linear_sum_assignment(cost)
    return torch.from_numpy(np.ascontiguousarray(perm)).to(device=x1.device, dtype=torch.long)


@dataclass
class SinkhornResult:
    """Entropic OT plan and diagnostics.

    plan: (n, m) transport plan with row sums 1/n and column sums 1/m (up to ``marginal_error``).
    log_plan: log of ``plan`` (finite where plan underflows to 0).
    epsilon: the absolute entropic regularisation used (in the cost's units).
    n_iter: iterations run; converged: whether the L1 marginal error reached ``tol``.
    """

    plan: Tensor
    log_plan: Tensor
    epsilon: float
    n_iter: int
    marginal_error: float
    converged: bool


def sinkhorn_log(
    cost: Tensor,
    epsilon: float,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    check_every: int = 10,
    warn: bool = True,
) -> SinkhornResult:
    """Entropic OT between uniform marginals by Sinkhorn iterations in the log domain.

    Solves min_P <P, C> - epsilon H(P) subject to P 1 = a, P^T 1 = b with a = 1/n, b = 1/m
    (Cuturi 2013), through the dual potentials (f, g):

        f_i = -epsilon logsumexp_j((g_j - C_ij) / epsilon + log b_j)
        g_j = -epsilon logsumexp_i((f_i - C_ij) / epsilon + log a_i)
        log P_ij = (f_i + g_j - C_ij) / epsilon + log a_i + log b_j

    The log-domain form never exponentiates -C/epsilon on its own, so it stays finite for any
    epsilon > 0 (Peyre & Cuturi 2019, Section 4.4). After each g-update the column marginals are
    exact; the row marginal L1 error is checked every ``check_every`` iterations. Runs on the
    cost's device and dtype. If the error does not reach ``tol`` in ``max_iter`` iterations a
    :class:`SinkhornWarning` is issued (when ``warn``) and the last plan is returned.
    """
    epsilon = check_positive_float("epsilon", epsilon)
    max_iter = check_positive_int("max_iter", max_iter)
    check_every = check_positive_int("check_every", check_every)
    if cost.dim() != 2 or cost.shape[0] == 0 or cost.shape[1] == 0:
        raise ValueError(f"cost must be a non-empty (n, m) matrix, got shape {tuple(cost.shape)}")
    n, m = cost.shape
    log_a = -math.log(n)
    log_b = -math.log(m)
    scaled = cost / epsilon
    # f and g below are the potentials divided by epsilon (f / epsilon, g / epsilon above).
    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    err = float("inf")
    it = 0
    for it in range(1, max_iter + 1):
        f = -torch.logsumexp(g[None, :] - scaled + log_b, dim=1)
        g = -torch.logsumexp(f[:, None] - scaled + log_a, dim=0)
        if it % check_every == 0 or it == max_iter:
            log_plan = f[:, None] + g[None, :] - scaled + (log_a + log_b)
            row = torch.logsumexp(log_plan, dim=1).exp()
            err = float((row - 1.0 / n).abs().sum())
            if err <= tol:
                break
    log_plan = f[:, None] + g[None, :] - scaled + (log_a + log_b)
    converged = err <= tol
    if not converged and warn:
        warnings.warn(
            f"Sinkhorn did not converge: marginal L1 error {err:.3g} > tol {tol:.3g} after "
            f"{it} iterations at epsilon={epsilon:.3g}; using the last plan "
            "(raise max_iter or the regularisation)",
            SinkhornWarning,
            stacklevel=2,
        )
    return SinkhornResult(
        plan=log_plan.exp(),
        log_plan=log_plan,
        epsilon=epsilon * 1.0,
        n_iter=it,
        marginal_error=err,
        converged=converged,
    )
