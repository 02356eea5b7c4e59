"""Exact minimum-cost assignment (the OT plan between two equal-size uniform batches).

For uniform weights 1/n on both sides, the optimal transport plan for any cost is a permutation
matrix divided by n (Birkhoff-von Neumann), so minibatch OT is the linear assignment problem

    min_s sum_i C[i, s(i)]  over permutations s of {0, ..., n-1}.

Certificate. Any column duals v give the feasible dual (u_i = min_j (C_ij - v_j), v) of the LP,
whose value sum_i u_i + sum_j v_j is a lower bound on the optimum; since s is a permutation,

    cost(s) - optimum <= sum_i [(C_is(i) - v_s(i)) - min_j (C_ij - v_j)],

a sum of terms >= 0. The row minima (v = 0) give a second bound, cost(s) - sum_i min_j C_ij.
The reported ``gap`` is the smaller of the two plus a bound on the float64 rounding of the
subtractions, minima and sums (factor 1 + (n + 2) u and 2 u sum_i (|C_is(i) - v_s(i)| + |u_i|),
u = 2^-52), so that cost(s) - optimum <= gap holds for the float64 matrix as given. A result is
accepted when

    gap <= rtol * max(M, n u max_ij |C_ij|),

M the largest lower bound on |optimum| that [cost - gap, cost] allows (0 when it contains 0):
relative to the optimum itself, with an absolute floor at the float64 resolution of a sum of n
costs. A solver result that cannot be certified so (the auction's prices, or emd's duals, so large
against the optimum that float64 cannot resolve the bound: e.g. tight clusters far apart, whose
optimum is tiny against the spread of the costs) is finished exactly by SciPy's
``linear_sum_assignment`` on the same float64 matrix, silently; the result then says ``lsa``.

Solvers (``solver=``):

- ``"auction"``: epsilon-scaling auction in C (:mod:`flowmatch.ot.native`, compiled on first use),
  its duals the negated prices. Faster than ``emd`` for n = 128..1024 (``flowmatch bench
  coupling``; measured: docs/benchmarks.md).
- ``"emd"``: POT's network simplex (``ot.emd``, Bonneel et al. 2011), float64; its gap is
  computed from its returned column duals as above (not assumed 0).
- ``"lsa"``: SciPy's ``linear_sum_assignment`` (shortest augmenting paths, Crouse 2016), exact;
  SciPy returns no duals, so its gap is reported as 0 (exact up to the rounding of its
  shortest-path arithmetic, which is not bounded here).
- ``"auto"``: ``auction`` when the kernel can be built, else ``emd``.

All return the same optimum (up to ties): tests compare them with brute force for n <= 7, with
``ot.emd`` for n = 256 and 1024, and with ``linear_sum_assignment`` where emd and the auction
cannot certify.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from flowmatch._utils.validate import check_choice
from flowmatch.ot import native as _native

__all__ = [
    "Assignment",
    "solve_assignment",
    "solve_assignments",
    "certified_gap",
    "SOLVERS",
    "native_available",
    "AssignmentWarning",
]

SOLVERS = ("auto", "auction", "emd", "lsa")


class AssignmentWarning(UserWarning):
    """The requested assignment solver was unavailable or failed, and another one was used."""


@dataclass(frozen=True)
class Assignment:
    """Result of :func:`solve_assignment`.

    perm: (n,) int64, row i is assigned column perm[i] (a permutation).
    cost: sum_i C[i, perm[i]].
    gap: certified upper bound on cost - optimum, rounding included (auction, emd: from their
        duals, see the module docstring; lsa: 0, SciPy returns no duals).
    solver: the solver that produced it (``auction``, ``emd`` or ``lsa``; ``lsa`` also when it was
        the exact finish of an auction or emd result that could not be certified).
    """

    perm: np.ndarray
    cost: float
    gap: float
    solver: str


def native_available() -> bool:
    """Whether the compiled auction kernel can be used here (compiles it on first call)."""
    return _native.load() is not None


def _max_bids(n: int) -> int:
    return 20_000 * n + 1_000_000


def _bound(cost: np.ndarray, primal: float, cabs: float, gap: float, rtol: float) -> float:
    """The gap a result must meet: rtol max(M, n u max |C|), M a lower bound on |optimum| (the
    module docstring; ``cabs`` = sum_i |C_is(i)|, whose rounding widens [cost - gap, cost])."""
    n, u = cost.shape[0], np.finfo(np.float64).eps
    e_p = (n + 1) * u * cabs
    lo, hi = primal - e_p - gap, primal + e_p
    mag = lo if lo > 0 else (-hi if hi < 0 else 0.0)
    return rtol * max(mag, n * u * float(np.abs(cost).max()))


def certified_gap(cost: np.ndarray, perm: np.ndarray, v: np.ndarray | None = None) -> float:
    """Upper bound on sum_i C[i, perm[i]] - optimum, float64 rounding included, from column duals
    ``v`` (any finite (n,) vector; None: the row-minimum bound alone). See the module docstring:
    the smaller of the dual bound sum_i [(C_is(i) - v_s(i)) - min_j (C_ij - v_j)] and the
    row-minimum bound, each widened by the rounding of its subtractions, minima and sums."""
    cost = np.asarray(cost, dtype=np.float64)
    n, u = cost.shape[0], np.finfo(np.float64).eps
    perm = np.asarray(perm)
    if cost.ndim != 2 or cost.shape != (n, n) or n == 0 or not np.isfinite(cost).all():
        raise ValueError(f"cost must be a finite non-empty square (n, n) matrix, got shape {cost.shape}")
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"perm must be a permutation of range({n}), got shape {perm.shape}")
    if v is not None:
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (n,) or not np.isfinite(v).all():
            raise ValueError(f"v must be a finite ({n},) vector of column duals, got shape {v.shape}")
    g = 1.0 + (n + 2) * u
    rows = np.arange(n)
    assigned = cost[rows, perm]
    rmin = cost.min(axis=1)
    gap = g * float(np.maximum(assigned - rmin, 0.0).sum())
    if v is not None:
        reduced = cost - v[None, :]
        ui = reduced.min(axis=1)
        wa = reduced[rows, perm]
        gap_d = g * (float((wa - ui).sum()) + 2 * u * float(np.abs(wa).sum() + np.abs(ui).sum()))
        gap = min(gap, gap_d)
    return gap


def _auction(cost: np.ndarray, rtol: float) -> Assignment | str | None:
    """The auction's result; a string when it cannot run (why), None when it ran but cannot
    certify its result in float64 (the caller finishes exactly)."""
    lib = _native.load()
    if lib is None:
        return f"the auction kernel is unavailable ({_native.build_error()})"
    n = cost.shape[0]
    c = np.ascontiguousarray(cost, dtype=np.float64)
    # few Python steps: in a prefetching thread each one may wait for the training thread's GIL
    iwork = np.empty((3 + _native.CANDIDATES) * n, dtype=np.int64)
    fwork = np.empty(2 * n, dtype=np.float64)
    out = np.zeros(7, dtype=np.float64)
    status = lib.fm_auction(
        n, c.ctypes.data, 0.1, 10.0, rtol, _max_bids(n), iwork.ctypes.data, fwork.ctypes.data, out.ctypes.data
    )
    if status == 1:
        return "the auction reached its bid limit"
    if status == 2:
        return None
    assign = iwork[:n].copy()
    if np.bincount(assign, minlength=n).max(initial=0) != 1:  # pragma: no cover - never observed
        return "the auction returned a non-permutation"
    return Assignment(perm=assign, cost=float(out[0]), gap=float(out[1]), solver="auction")


def _emd(cost: np.ndarray, rtol: float) -> Assignment:
    """POT's network simplex, its gap from its column duals; finished by lsa when not certified."""
    import ot

    n = cost.shape[0]
    w = np.full(n, 1.0 / n)
    with warnings.catch_warnings():  # non-convergence shows in the certificate instead
        warnings.simplefilter("ignore", UserWarning)
        plan, log = ot.emd(w, w, cost, numItermax=max(100_000, 50 * n * n), log=True)
    perm = plan.argmax(axis=1)
    v = np.asarray(log["v"], dtype=np.float64)
    if np.unique(perm).size != n or not np.isfinite(v).all():  # degenerate plan or duals
        return _lsa(cost)
    perm = np.ascontiguousarray(perm, dtype=np.int64)
    assigned = cost[np.arange(n), perm]
    primal = float(assigned.sum())
    gap = certified_gap(cost, perm, v)
    if gap > _bound(cost, primal, float(np.abs(assigned).sum()), gap, rtol):
        return _lsa(cost)
    return Assignment(perm=perm, cost=primal, gap=gap, solver="emd")


def _lsa(cost: np.ndarray) -> Assignment:
    from scipy.optimize import linear_sum_assignment

    n = cost.shape[0]
    _, perm = linear_sum_assignment(cost)
    perm = np.ascontiguousarray(perm, dtype=np.int64)
    return Assignment(perm=perm, cost=float(cost[np.arange(n), perm].sum()), gap=0.0, solver="lsa")


def _checked(cost, *, stack: bool, solver: str, rtol: float) -> np.ndarray:
    """The cost matrix (stack: a stack of them) as a float64 C-contiguous array, after the checks
    of :func:`solve_assignment` and :func:`solve_assignments`."""
    check_choice("solver", solver, SOLVERS)
    if hasattr(cost, "detach"):
        cost = cost.detach().cpu().double().numpy()
    c = np.ascontiguousarray(cost, dtype=np.float64)
    name, what = (
        ("costs", "a stack of non-empty square matrices (b, n, n)")
        if stack
        else ("cost", "a non-empty square (n, n) matrix")
    )
    if c.ndim != (3 if stack else 2) or c.shape[-1] != c.shape[-2] or c.shape[-1] == 0:
        raise ValueError(f"{name} must be {what}, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError(f"{name} must be finite, got a matrix with inf or NaN entries")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    return c


def solve_assignment(cost, *, solver: str = "auto", rtol: float = 1e-12) -> Assignment:
    """Minimum-cost permutation of a square cost matrix ``cost`` (n, n) (NumPy or torch, finite).

    Solves min_s sum_i C[i, s(i)] (the exact OT plan between uniform batches of equal size;
    Peyre & Cuturi 2019, Prop. 2.1). ``solver`` is ``auto``, ``auction``, ``emd`` or ``lsa`` (see
    the module docstring); ``rtol`` is the certified gap relative to the optimum (auction, emd:
    gap <= rtol max(|optimum|, n u max |C|), else the exact finish by ``lsa``). If ``auction`` is
    requested but cannot run, ``emd`` is used with an :class:`AssignmentWarning` (``auto`` falls
    back silently). The cost is solved in float64; the call releases the GIL (auction, emd).
    """
    c = _checked(cost, stack=False, solver=solver, rtol=rtol)
    n = c.shape[0]
    if n == 1:
        return Assignment(
            perm=np.zeros(1, dtype=np.int64),
            cost=float(c[0, 0]),
            gap=0.0,
            solver="auction" if solver in ("auto", "auction") else solver,
        )
    if solver in ("auto", "auction"):
        res = _auction(c, rtol)
        if isinstance(res, Assignment):
            return res
        if res is None:  # not certifiable in float64: the exact finish
            return _lsa(c)
        if solver == "auction" or _native.build_error() is None:
            warnings.warn(f"{res}; solving with POT's emd instead", AssignmentWarning, stacklevel=2)
        return _emd(c, rtol)
    if solver == "emd":
        return _emd(c, rtol)
    return _lsa(c)


def solve_assignments(costs, *, solver: str = "auto", rtol: float = 1e-12) -> np.ndarray:
    """Minimum-cost permutations of a stack of square cost matrices ``costs`` (b, n, n).

    Returns (b, n) int64: row i of problem k is assigned column ``perms[k, i]``. With the auction
    all problems are solved in one call of the kernel (one GIL release, no Python per problem: the
    blocks of :class:`~flowmatch.couplings.BlockOT`); a problem the auction cannot finish, and
    every problem with another ``solver``, goes through :func:`solve_assignment` (a problem whose
    result cannot be certified: the exact finish by ``lsa``, as there).
    """
    c = _checked(costs, stack=True, solver=solver, rtol=rtol)
    b, n = c.shape[0], c.shape[1]
    lib = _native.load() if solver in ("auto", "auction") and n > 1 else None
    if lib is None:
        return np.stack([solve_assignment(m, solver=solver, rtol=rtol).perm for m in c]).reshape(b, n)
    iwork = np.empty((3 + _native.CANDIDATES) * n, dtype=np.int64)
    fwork = np.empty(2 * n, dtype=np.float64)
    out = np.zeros(7 * b, dtype=np.float64)
    status = np.zeros(b, dtype=np.int64)
    perms = np.empty((b, n), dtype=np.int64)
    failed = lib.fm_auction_many(
        b,
        n,
        c.ctypes.data,
        0.1,
        10.0,
        rtol,
        _max_bids(n),
        iwork.ctypes.data,
        fwork.ctypes.data,
        out.ctypes.data,
        status.ctypes.data,
        perms.ctypes.data,
    )
    for k in np.flatnonzero(status != 0) if failed else ():  # as solve_assignment
        if status[k] == 2:  # not certifiable in float64: the exact finish
            perms[k] = _lsa(c[k]).perm
            continue
        warnings.warn(
            "the auction reached its bid limit; solving with POT's emd instead", AssignmentWarning, stacklevel=2
        )
        perms[k] = _emd(c[k], rtol).perm
    return perms
