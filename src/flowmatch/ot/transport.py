"""Optimal-transport solvers on minibatches: the exact assignment, log-domain Sinkhorn (with
epsilon scaling), unbalanced and partial OT.

These are the numerical kernels behind :mod:`flowmatch.couplings`. They use the squared
Euclidean cost C_ij = ||x0_i - x1_j||^2 on flattened samples, which is the cost whose optimal
coupling makes the conditional paths of OT-CFM straight (Tong et al. TMLR 2024, Section 3.2).
The exact assignment itself is solved by :mod:`flowmatch.ot.assignment`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_float, check_positive_int
from flowmatch.ot import native as _native
from flowmatch.ot.assignment import solve_assignment

__all__ = [
    "squared_cost",
    "centered_squared_cost",
    "batched_centered_squared_cost",
    "squared_cost_f64",
    "exact_ot_permutation",
    "SinkhornResult",
    "sinkhorn_log",
    "SinkhornWarning",
    "unbalanced_sinkhorn_plan",
    "partial_ot_plan",
    "masked_squared_cost_f64",
]


#: Largest (max C - min C) / epsilon at which Sinkhorn iterates with the kernel exp(-C / epsilon)
#: (float64) instead of in the log domain.
KERNEL_MAX_RATIO = 200.0


class SinkhornWarning(UserWarning):
    """Sinkhorn stopped before its marginals reached the requested tolerance."""


def squared_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """C_ij = ||x0_i - x1_j||^2 for x0 (n, *dims), x1 (m, *dims); returns (n, m), clamped at 0."""
    return _row_squared_cost(x0.reshape(x0.shape[0], -1), x1.reshape(x1.shape[0], -1))


def _row_squared_cost(a: Tensor, b: Tensor) -> Tensor:
    """C[..., i, j] = ||a[..., i, :] - b[..., j, :]||^2 for rows a (..., n, D), b (..., m, D)."""
    # ||a||^2 + ||b||^2 - 2 a.b is one matmul; clamp the small negative round-off.
    cost = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2.0 * (a @ b.transpose(-1, -2))
    return cost.clamp_min_(0.0)


def centered_squared_cost(x0: Tensor, x1: Tensor) -> Tensor:
    """``squared_cost`` after subtracting the mean of both batches (the same matrix, less round-off).

    ||x0_i - x1_j||^2 is translation invariant; centring first shrinks the norms in
    ||a||^2 + ||b||^2 - 2 a.b and so the cancellation error of the one-matmul form. Computed in
    the batches' dtype (float32 data: float32, whose squares overflow beyond |x| ~ 1e19 and
    underflow below ~1e-19; the exact couplings use :func:`squared_cost_f64` instead).
    """
    return batched_centered_squared_cost(x0.detach().reshape(x0.shape[0], -1), x1.detach().reshape(x1.shape[0], -1))


def batched_centered_squared_cost(a: Tensor, b: Tensor) -> Tensor:
    """:func:`centered_squared_cost` of many problems at once: rows a (..., n, D) and b (..., m, D),
    each problem centred on its own mean; returns (..., n, m) (one batched product instead of one
    small product per problem, e.g. the blocks of :class:`~flowmatch.couplings.BlockOT`)."""
    if not a.is_floating_point():
        a, b = a.double(), b.double()
    m = 0.5 * (a.mean(-2, keepdim=True) + b.mean(-2, keepdim=True))
    return _row_squared_cost(a - m, b - m)


#: Largest flattened sample dimension for which :func:`squared_cost_f64` takes the differences in
#: the compiled kernel (beyond it a matrix product is faster).
DIRECT_COST_MAX_DIM = 4


def squared_cost_f64(x0: Tensor, x1: Tensor) -> Tensor:
    """The squared cost (n, m) in float64 on the CPU: what the exact assignment solves.

    Always computed in float64, whatever the batches' dtype and dimension (a product of two
    float32 numbers is exact in float64, and float64 neither overflows nor underflows on squared
    distances of float32 data, whereas float32 squares overflow beyond |x| ~ 1.8e19 / sqrt(D),
    lose precision below ~1e-19 and vanish below ~4e-23: 64D batches at 1e20 were "not finite",
    at 1e-25 paired 16-43% above the optimum). CPU batches of at most
    :data:`DIRECT_COST_MAX_DIM` dimensions go to the compiled kernel, which sums
    (x0_ik - x1_jk)^2 in float64 (no cancellation, and in low dimension faster than the matrix
    product and its float64 copy); otherwise the centred product ||a||^2 + ||b||^2 - 2 a.b
    of :func:`centered_squared_cost` in float64, on the batches' device, then moved to the CPU
    (its cost against the float32 product: docs/benchmarks.md).
    """
    na, nb = _numpy_rows(x0), _numpy_rows(x1)
    if na is not None and nb is not None and na.shape[1] <= DIRECT_COST_MAX_DIM:
        out = _native.squared_distances(na, nb)
        if out is not None:
            return torch.from_numpy(out)
    a = x0.detach().reshape(x0.shape[0], -1).double()
    b = x1.detach().reshape(x1.shape[0], -1).double()
    m = 0.5 * (a.mean(0) + b.mean(0))
    a, b = a - m, b - m
    # ||a||^2 + ||b||^2 - 2 a.b with one (n, m) buffer: addmm, then in place (each further
    # temporary of n^2 float64 cost measurably at n = 1024)
    cost = torch.addmm((b * b).sum(1).unsqueeze(0), a, b.T, alpha=-2.0)
    return cost.add_((a * a).sum(1, keepdim=True)).clamp_min_(0.0).cpu()


def masked_squared_cost_f64(x0: Tensor, x1: Tensor, mask1: Tensor) -> Tensor:
    """The squared cost (n, m) over the valid elements of the targets, in float64 on the CPU:

        C_ij = sum_k m_jk (x0_ik - x1_jk)^2,

    with ``mask1`` (m, *dims) or broadcastable to x1 (1 = valid element of x1_j; padded sequences,
    :mod:`flowmatch.data.masks`). A source row is compared with a target only where the target
    has frames, so padding never enters the pairing. Expanded as
    sum_k x0_ik^2 m_jk - 2 sum_k x0_ik m_jk x1_jk + sum_k m_jk x1_jk^2: two matrix products.
    """
    n, m = x0.shape[0], x1.shape[0]
    a = x0.detach().reshape(n, -1).double()
    w = mask1.detach().expand_as(x1).reshape(m, -1).to(device=a.device, dtype=torch.float64)
    b = x1.detach().reshape(m, -1).to(device=a.device, dtype=torch.float64) * w
    cost = torch.addmm((b * b).sum(1).unsqueeze(0), a, b.T, alpha=-2.0)  # w * w = w for a 0/1 mask
    cost.addmm_(a * a, w.T)
    return cost.clamp_min_(0.0).cpu()


def _numpy_rows(x: Tensor) -> np.ndarray | None:
    """x (n, *dims) on the CPU as a NumPy (n, D) view (NumPy steps only: in a prefetching thread
    every torch call may wait for the training thread's GIL), or None (other device, bfloat16)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float16, torch.float32, torch.float64):
        return None
    return (x.detach() if x.requires_grad else x).numpy().reshape(x.shape[0], -1)


def exact_ot_permutation(x0: Tensor, x1: Tensor, *, solver: str = "auto") -> Tensor:
    """Optimal assignment for the squared Euclidean cost between two equal-size batches.

    Solves min_P sum_ij P_ij ||x0_i - x1_j||^2 over doubly stochastic P (uniform weights 1/n).
    The optimum is attained at a permutation matrix (Birkhoff-von Neumann), so every x0_i is
    paired with exactly one x1_j and no pair repeats. Returns ``perm`` (n,) long, on x1's device,
    with x0_i paired to x1_perm[i].

    The cost is :func:`squared_cost_f64` (the coupling :class:`~flowmatch.couplings.ExactOT`
    solves the same), solved in float64 by
    :func:`flowmatch.ot.assignment.solve_assignment` (``solver``: ``auto`` = the compiled auction
    with a certified gap of 1e-12 of the optimum, falling back to POT's network simplex ``emd``,
    either finished exactly by SciPy's ``lsa`` when float64 cannot certify it; or ``auction``,
    ``emd``, ``lsa``).
    """
    n = x0.shape[0]
    if x1.shape[0] != n:
        raise ValueError(f"exact OT pairing needs batches of equal size, got {n} source and {x1.shape[0]} target rows")
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=x1.device)
    perm = solve_assignment(squared_cost_f64(x0, x1).numpy(), solver=solver).perm
    return torch.from_numpy(perm).to(device=x1.device, dtype=torch.long)


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


def _hopeless(
    history: dict[int, float], it: int, err: float, tol: float, max_iter: int, window: int, min_iter: int
) -> bool:
    """Whether reaching ``tol`` at the linear rate measured over the last ``window`` iterations
    would take more than twice the ``max_iter - it`` iterations left."""
    before = history.get(it - window)
    if it < min_iter or before is None or not before > 0 or not err > 0:
        return False
    decades_per_iter = math.log10(before / err) / window
    if decades_per_iter <= 0:  # stalled (at the dtype's precision, or diverging)
        return True
    return math.log10(err / tol) / decades_per_iter > 2 * (max_iter - it)


class _SinkhornStep:
    """The two half-steps of Sinkhorn at one epsilon, on potentials divided by epsilon:

        f_i = -log sum_j exp(g_j - C_ij / epsilon + log b_j),  g_j likewise over i.

    When the scaled cost range (max C - min C) / epsilon is at most :data:`KERNEL_MAX_RATIO`, they
    run as matrix-vector products with the kernel K = exp(-(C - min C) / epsilon) in float64,
    whose entries then stay above e^-200 (and the scalings exp(g) within float64's range): the
    same numbers as the log-domain form to rounding, several times faster (one exp per entry per
    level instead of two per iteration), with the potentials kept in float64. Beyond that ratio,
    the log-domain logsumexp in the cost's dtype.
    """

    def __init__(self, cost: Tensor, epsilon: float, cmin: float, spread: float):
        self.dtype = cost.dtype
        self.kernel = spread / epsilon <= KERNEL_MAX_RATIO
        if self.kernel:
            self.K = torch.exp(-(cost.double() - cmin) / epsilon)
            self.shift = cmin / epsilon  # C / epsilon = (C - min C) / epsilon + shift
        else:
            self.scaled = cost / epsilon

    def rows(self, g: Tensor, log_b: float) -> Tensor:
        if self.kernel:
            return self.shift - torch.log(self.K @ torch.exp(g.double() + log_b))
        return -torch.logsumexp(g.to(self.dtype)[None, :] - self.scaled + log_b, dim=1)

    def cols(self, f: Tensor, log_a: float) -> Tensor:
        if self.kernel:
            return self.shift - torch.log(self.K.T @ torch.exp(f.double() + log_a))
        return -torch.logsumexp(f.to(self.dtype)[:, None] - self.scaled + log_a, dim=0)

    def row_sums(self, f: Tensor, g: Tensor, log_a: float, log_b: float) -> Tensor:
        """Row sums of the plan exp(f_i + g_j - C_ij / epsilon + log a + log b)."""
        if self.kernel:
            return torch.exp(f.double() + log_a - self.shift) * (self.K @ torch.exp(g.double() + log_b))
        return torch.logsumexp(
            f.to(self.dtype)[:, None] + g.to(self.dtype)[None, :] - self.scaled + (log_a + log_b), dim=1
        ).exp()


def sinkhorn_log(
    cost: Tensor,
    epsilon: float,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    check_every: int = 10,
    warn: bool = True,
    eps_scaling: bool = True,
    give_up_early: bool = True,
) -> SinkhornResult:
    """Entropic OT between uniform marginals by Sinkhorn iterations in the log domain.

    Solves min_P <P, C> - epsilon H(P) subject to P 1 = a, P^T 1 = b with a = 1/n, b = 1/m
    (Cuturi 2013), through the dual potentials (f, g):

        f_i = -epsilon logsumexp_j((g_j - C_ij) / epsilon + log b_j)
        g_j = -epsilon logsumexp_i((f_i - C_ij) / epsilon + log a_i)
        log P_ij = (f_i + g_j - C_ij) / epsilon + log a_i + log b_j

    The log-domain form never exponentiates -C/epsilon on its own, so it stays finite for any
    epsilon > 0 (Peyre & Cuturi 2019, Section 4.4). With ``eps_scaling`` (default) and epsilon
    below the cost's range R = max C - min C, the potentials are first brought to convergence along
    epsilon_k = R / 4^k (10 iterations per level) down to epsilon (Schmitzer 2019, "Stabilized
    sparse scaling algorithms", Section 3.2): the fixed point is the same, but small epsilon then
    converges in tens instead of thousands of iterations. After each g-update the column
    marginals are exact; the row marginal L1 error is checked every ``check_every`` iterations
    of the final level (``max_iter`` counts those). Runs on the cost's device and returns the plan
    in its dtype; while (max C - min C) / epsilon <= :data:`KERNEL_MAX_RATIO` the iterations are
    matrix-vector products with exp(-C / epsilon) in float64 (:class:`_SinkhornStep`). If the
    error does not reach ``tol`` a :class:`SinkhornWarning` is issued (when ``warn``) and the last
    plan is returned.

    Sinkhorn converges linearly, with a rate that degrades like exp(-gap / epsilon) when the
    plan is made of clusters far apart (moons-wide -> 8gaussians-wide at epsilon = 2: about one
    decade of error per 250 iterations). With ``give_up_early`` (default), after at least
    10 ``check_every`` final-level iterations the rate measured over the last 5 ``check_every``
    is extrapolated: when reaching ``tol`` at that rate would take more than twice the iterations
    left (or the error stalls), the run stops there as not converged: the outcome of running out
    of ``max_iter``, sooner.
    """
    epsilon = check_positive_float("epsilon", epsilon)
    max_iter = check_positive_int("max_iter", max_iter)
    check_every = check_positive_int("check_every", check_every)
    if cost.dim() != 2 or cost.shape[0] == 0 or cost.shape[1] == 0:
        raise ValueError(f"cost must be a non-empty (n, m) matrix, got shape {tuple(cost.shape)}")
    n, m = cost.shape
    log_a = -math.log(n)
    log_b = -math.log(m)
    # f and g below are the potentials divided by the current epsilon.
    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    cmin = float(cost.min())
    spread = float(cost.max()) - cmin
    levels = [epsilon]
    if eps_scaling:
        while levels[0] * 4.0 < spread:
            levels.insert(0, levels[0] * 4.0)
    prev_eps = levels[0]
    for eps_k in levels[:-1]:
        f, g = f * (prev_eps / eps_k), g * (prev_eps / eps_k)
        step = _SinkhornStep(cost, eps_k, cmin, spread)
        for _ in range(10):
            f = step.rows(g, log_b)
            g = step.cols(f, log_a)
        prev_eps = eps_k
    f, g = f * (prev_eps / epsilon), g * (prev_eps / epsilon)
    step = _SinkhornStep(cost, epsilon, cmin, spread)
    err = float("inf")
    history: dict[int, float] = {}
    it = 0
    for it in range(1, max_iter + 1):
        f = step.rows(g, log_b)
        g = step.cols(f, log_a)
        if it % check_every == 0 or it == max_iter:
            err = float((step.row_sums(f, g, log_a, log_b) - 1.0 / n).abs().sum())
            if err <= tol:
                break
            history[it] = err
            if give_up_early and _hopeless(history, it, err, tol, max_iter, 5 * check_every, 10 * check_every):
                break
    scaled = cost / epsilon
    log_plan = (f[:, None] + g[None, :] - scaled + (log_a + log_b)).to(cost.dtype)
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


def unbalanced_sinkhorn_plan(
    cost: Tensor, epsilon: float, reg_m: float, *, max_iter: int = 1000, tol: float = 1e-6
) -> Tensor:
    """Unbalanced entropic OT plan between uniform weights, by POT (float64, CPU).

    Solves min_P <P, C> - epsilon H(P) + reg_m KL(P 1 | a) + reg_m KL(P^T 1 | b) (Chizat et al.
    2018; ``ot.unbalanced.sinkhorn_unbalanced``, stabilised log-domain method). The marginals are
    only softly enforced: mass that is expensive to move (outliers) is created or destroyed, at a
    price reg_m per unit of KL. reg_m -> inf gives the balanced entropic plan. Returns (n, m).
    """
    import ot

    epsilon = check_positive_float("epsilon", epsilon)
    reg_m = check_positive_float("reg_m", reg_m)
    c = cost.detach().cpu().double().numpy()
    n, m = c.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns on non-convergence; the plan is checked below
        plan = ot.unbalanced.sinkhorn_unbalanced(
            np.full(n, 1.0 / n),
            np.full(m, 1.0 / m),
            c,
            epsilon,
            reg_m,
            method="sinkhorn_stabilized",
            numItermax=max_iter,
            stopThr=tol,
        )
    plan = np.nan_to_num(np.asarray(plan), nan=0.0, posinf=0.0, neginf=0.0)
    return torch.from_numpy(plan)


def partial_ot_plan(cost: Tensor, mass: float) -> Tensor:
    """Exact partial OT plan moving only ``mass`` of the (uniform, total 1) mass, by POT.

    Solves min_P <P, C> subject to P 1 <= a, P^T 1 <= b, 1^T P 1 = mass (Figalli 2010;
    ``ot.partial.partial_wasserstein``, network simplex with a dummy point, float64, CPU). The
    1 - mass that stays behind is the part most expensive to transport. Returns (n, m).
    """
    import ot

    if not isinstance(mass, (int, float)) or not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    c = cost.detach().cpu().double().numpy()
    n, m = c.shape
    plan = ot.partial.partial_wasserstein(np.full(n, 1.0 / n), np.full(m, 1.0 / m), c, m=float(mass))
    return torch.from_numpy(np.asarray(plan))
