"""Distances between two sample sets: exact p-Wasserstein and the unbiased RBF MMD.

W_p(x, y)   = ( min_{P in U(a, b)} sum_ij P_ij ||x_i - y_j||^p )^(1/p)     (exact OT)
MMD^2_u     = 1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
              - 2/(nm) sum_ij k(x_i, y_j),     k(u, v) = sum_s exp(-||u - v||^2 / (2 s^2))
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_float, check_positive_int
from flowmatch.metrics._inputs import as_pair, as_samples, as_weights

__all__ = ["wasserstein", "w1", "w2", "mmd_rbf", "median_pairwise_distance", "SampleQuality", "sample_quality"]

DEFAULT_NUM_ITER_MAX = 10_000_000
#: Certified relative gap of the assignment that computes W_p between equal-size uniform sets.
ASSIGNMENT_RTOL = 1e-9
_DEFAULT_BANDWIDTH_FACTORS = (0.5, 1.0, 2.0)
_MEDIAN_MAX_POINTS = 2048
_BLOCK_ROWS = 512


# --------------------------------------------------------------------------------------------
# Optimal transport distances
# --------------------------------------------------------------------------------------------


def ot_cost(xs: Tensor, ys: Tensor, p: float, a: Any, b: Any, num_iter_max: int) -> float:
    """Exact OT cost ``min_P <P, C>`` with ``C_ij = ||x_i - y_j||^p``.

    Two uniform sets of equal size: the optimum is a permutation (Birkhoff-von Neumann), solved as
    an assignment by the compiled auction certified to ``ASSIGNMENT_RTOL`` relative (several times
    faster than POT's emd2 at 10k x 10k: ``benchmarks/exact_w2.py``, docs/benchmarks.md);
    otherwise POT's network simplex (``ot.emd2``).
    """
    import ot  # POT; imported lazily (slow import)
    from scipy.spatial.distance import cdist

    n, m = xs.shape[0], ys.shape[0]
    uniform = a is None and b is None and n == m and n > 1
    wa = as_weights("a", a, xs.shape[0])
    wb = as_weights("b", b, ys.shape[0])
    xn, yn = xs.numpy(), ys.numpy()
    # cdist computes each pair's difference directly (no ||x||^2 + ||y||^2 - 2<x, y> cancellation).
    if p == 2.0:
        cost = cdist(xn, yn, metric="sqeuclidean")
    else:
        cost = cdist(xn, yn, metric="euclidean")
        if p != 1.0:
            cost = cost**p
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    if uniform:
        from flowmatch.ot.assignment import native_available, solve_assignment

        if native_available():
            return max(solve_assignment(cost, rtol=ASSIGNMENT_RTOL).cost / n, 0.0)
    with warnings.catch_warnings():
        # POT warns on non-convergence; we turn its result code into an error instead.
        warnings.simplefilter("ignore", UserWarning)
        value, log = ot.emd2(wa, wb, cost, numItermax=num_iter_max, log=True)
    code = int(log["result_code"])
    if code != 1:  # 1 = OPTIMAL in POT's network simplex
        if code == 3:
            raise RuntimeError(
                f"exact OT did not converge: numItermax={num_iter_max} reached before optimality "
                f"for {xs.shape[0]} x {ys.shape[0]} points; pass a larger num_iter_max"
            )
        raise RuntimeError(f"exact OT failed with POT result code {code}: {log.get('warning')}")
    return max(float(value), 0.0)


def wasserstein(
    x: Any, y: Any, *, p: float = 2, a: Any = None, b: Any = None, num_iter_max: int = DEFAULT_NUM_ITER_MAX
) -> float:
    """Exact p-Wasserstein distance between two empirical distributions.

    .. math::
        W_p(x, y) = \\Big( \\min_{P \\in U(a, b)} \\sum_{ij} P_{ij} \\|x_i - y_j\\|^p \\Big)^{1/p},

    with Euclidean norm on the flattened samples (``p = 2``: squared Euclidean cost, then the
    square root), ``U(a, b)`` the couplings with marginals ``a`` and ``b`` (uniform by default).
    Solved exactly, as in Tong et al. (TMLR 2024, Table 2: "W2 = exact 2-Wasserstein between
    generated and held-out target samples"): two unweighted sets of equal size as an assignment
    (the compiled auction of :mod:`flowmatch.ot.assignment`, optimal to a certified relative gap of
    ``ASSIGNMENT_RTOL`` = 1e-9), anything else with POT's network simplex (``ot.emd2``).

    Args:
        x: samples ``(n, *dims)`` (or ``(n,)`` for scalars).
        y: samples ``(m, *dims)`` with the same flattened dimension ``D``.
        p: order, a finite number >= 1.
        a: optional non-negative weights ``(n,)`` of ``x`` (normalised to sum 1).
        b: optional non-negative weights ``(m,)`` of ``y`` (normalised to sum 1).
        num_iter_max: network-simplex iteration cap (POT's path: weights or unequal sizes); the
            default (1e7) converges for n = m = 10000. Memory: the dense ``(n, m)`` float64 cost
            matrix (800 MB at 10k x 10k).

    Returns:
        ``W_p`` as a float.

    Raises:
        ValueError: empty or non-finite input, mismatched dimensions, bad ``p`` or weights.
        RuntimeError: POT did not reach optimality (e.g. ``num_iter_max`` too small).
    """
    try:
        pf = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"p must be a finite number >= 1, got {p!r}") from None
    if isinstance(p, bool) or not math.isfinite(pf) or pf < 1:
        raise ValueError(f"p must be a finite number >= 1, got {p!r}")
    p = pf
    num_iter_max = check_positive_int("num_iter_max", num_iter_max)
    xs, ys = as_pair(x, y)
    return ot_cost(xs, ys, p, a, b, num_iter_max) ** (1.0 / p)


def w1(x: Any, y: Any, **kwargs: Any) -> float:
    """Exact 1-Wasserstein distance (Euclidean cost); shortcut for ``wasserstein(x, y, p=1)``."""
    return wasserstein(x, y, p=1, **kwargs)


def w2(x: Any, y: Any, **kwargs: Any) -> float:
    """Exact 2-Wasserstein distance (squared Euclidean cost, square root of the optimum).

    Shortcut for ``wasserstein(x, y, p=2)``; the W2 of Tong et al. (TMLR 2024, Table 2).
    """
    return wasserstein(x, y, p=2, **kwargs)


# --------------------------------------------------------------------------------------------
# Maximum mean discrepancy
# --------------------------------------------------------------------------------------------


def _sq_dists(u: Tensor, v: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ``(len(u), len(v))``, clamped at 0."""
    d = (u * u).sum(1)[:, None] + (v * v).sum(1)[None, :] - 2.0 * (u @ v.T)
    return d.clamp_min_(0.0)


def median_pairwise_distance(x: Any, y: Any | None = None) -> float:
    """Median Euclidean distance over distinct pairs ``i < j`` of the pooled sample ``x ∪ y``.

    For more than 2048 pooled points the median is taken over 2048 evenly spaced points of the
    pooled sample (deterministic; no random draw). This is the "median heuristic" bandwidth.
    """
    z = as_samples("x", x) if y is None else torch.cat(as_pair(x, y), dim=0)
    if z.shape[0] < 2:
        raise ValueError(f"the pooled sample needs at least 2 points, got {z.shape[0]}")
    if z.shape[0] > _MEDIAN_MAX_POINTS:
        idx = torch.linspace(0, z.shape[0] - 1, _MEDIAN_MAX_POINTS).round().long()
        z = z[idx]
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    d = _sq_dists(z, z)[iu[0], iu[1]].sqrt()
    return float(np.median(d.numpy()))  # mean of the two middle values for an even count


def _kernel_sum(u: Tensor, v: Tensor, inv_two_s2: Tensor) -> float:
    """``sum_ij sum_s exp(-||u_i - v_j||^2 / (2 s^2))``, in row blocks to bound memory."""
    total = 0.0
    for start in range(0, u.shape[0], _BLOCK_ROWS):
        d = _sq_dists(u[start : start + _BLOCK_ROWS], v)
        for c in inv_two_s2.tolist():
            total += float(torch.exp(d * (-c)).sum())
    return total


def mmd_rbf(x: Any, y: Any, *, bandwidths: Sequence[float] | None = None) -> float:
    """Squared maximum mean discrepancy with a sum of RBF kernels, unbiased U-statistic.

    .. math::
        \\mathrm{MMD}^2_u = \\frac{1}{n(n-1)} \\sum_{i \\ne j} k(x_i, x_j)
            + \\frac{1}{m(m-1)} \\sum_{i \\ne j} k(y_i, y_j) - \\frac{2}{nm} \\sum_{i, j} k(x_i, y_j),
        \\qquad k(u, v) = \\sum_{s} \\exp\\!\\big(-\\|u - v\\|^2 / (2 s^2)\\big)

    (Gretton et al., "A Kernel Two-Sample Test", JMLR 2012, Eq. 3). Being unbiased, the estimate
    can be slightly negative when the two distributions are equal; it is returned as is.

    Args:
        x: samples ``(n, *dims)``, n >= 2.
        y: samples ``(m, *dims)``, m >= 2, same flattened dimension.
        bandwidths: kernel widths ``s`` (positive). Default: ``median * (0.5, 1, 2)`` where
            ``median`` is :func:`median_pairwise_distance` of the pooled sample ``x ∪ y``
            (1.0 if that median is 0, i.e. most points coincide).

    Returns:
        ``MMD^2_u`` as a float.

    Cost: ``(n + m)^2`` kernel evaluations per bandwidth in float64, in row blocks of 512
    (memory O(512 * max(n, m))): quadratic in the number of points.
    """
    xs, ys = as_pair(x, y)
    n, m = xs.shape[0], ys.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd_rbf needs at least 2 samples on each side, got n={n}, m={m}")
    if bandwidths is None:
        med = median_pairwise_distance(xs, ys)
        if med <= 0:
            med = 1.0
        bws = [med * f for f in _DEFAULT_BANDWIDTH_FACTORS]
    else:
        if isinstance(bandwidths, (int, float)):
            bandwidths = [bandwidths]
        bws = [check_positive_float("bandwidth", s) for s in bandwidths]
        if not bws:
            raise ValueError("bandwidths must hold at least one positive number, got []")
    inv = torch.tensor([1.0 / (2.0 * s * s) for s in bws], dtype=torch.float64)
    k = float(len(bws))  # kernel value on the diagonal (distance 0)
    kxx = (_kernel_sum(xs, xs, inv) - n * k) / (n * (n - 1))
    kyy = (_kernel_sum(ys, ys, inv) - m * k) / (m * (m - 1))
    kxy = _kernel_sum(xs, ys, inv) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


# --------------------------------------------------------------------------------------------
# Convenience
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleQuality:
    """Distances between generated and target samples.

    Attributes:
        w1: exact 1-Wasserstein distance (:func:`w1`).
        w2: exact 2-Wasserstein distance (:func:`w2`), the W2 of Tong et al. TMLR 2024, Table 2.
        mmd: squared MMD, unbiased, RBF kernels at median * (0.5, 1, 2) (:func:`mmd_rbf`).
    """

    w1: float
    w2: float
    mmd: float


def sample_quality(generated: Any, target: Any) -> SampleQuality:
    """Compute :class:`SampleQuality` (W1, W2, MMD^2) between ``generated`` and ``target``.

    Both are ``(n, *dims)``; two exact OT problems and an MMD are computed, so the cost grows
    quickly with n (at 10k x 10k, tens of seconds on a CPU).
    """
    gs, ts = as_pair(generated, target, "generated", "target")
    return SampleQuality(w1=w1(gs, ts), w2=w2(gs, ts), mmd=mmd_rbf(gs, ts))
