"""Exact assignment solvers: the compiled auction, POT's emd and SciPy's lsa against brute force
(n <= 7) and against each other (n = 256, 1024), with the auction's duality-gap certificate."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import ot
import pytest
import torch

from flowmatch.data import sample_toy
from flowmatch.ot import assignment
from flowmatch.ot import native as _native
from flowmatch.ot.assignment import AssignmentWarning, native_available, solve_assignment
from flowmatch.ot.transport import exact_ot_permutation

SOLVERS = ["auction", "emd", "lsa"]


def _brute_force(cost: np.ndarray) -> float:
    n = cost.shape[0]
    perms = np.array(list(itertools.permutations(range(n))))
    return float(cost[np.arange(n), perms].sum(axis=1).min())


def test_the_native_kernel_builds_here():
    # The development machines have a C compiler; without one, "auto" falls back to emd.
    assert native_available(), _native.build_error()


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_every_solver_equals_brute_force(solver, n):
    rng = np.random.default_rng(n)
    for scale in (1e-3, 1.0, 1e4):
        for kind in ("uniform", "squared", "ties"):
            if kind == "uniform":
                cost = rng.random((n, n)) * scale
            elif kind == "squared":
                cost = ot.dist(rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) * 2 + 1) * scale
            else:  # many equal entries: several optimal permutations
                cost = rng.integers(0, 3, size=(n, n)).astype(float) * scale
            res = solve_assignment(cost, solver=solver)
            assert sorted(res.perm.tolist()) == list(range(n))
            best = _brute_force(cost)
            assert res.cost == pytest.approx(float(cost[np.arange(n), res.perm].sum()), rel=1e-15, abs=0)
            assert res.cost == pytest.approx(best, rel=1e-12, abs=1e-12 * scale)


@pytest.mark.parametrize("n", [203, 256, 1024])  # 203: the 8-wide scan and its tail
@pytest.mark.parametrize("data", ["moons", "64d"])
def test_auction_matches_pot_emd_and_certifies_its_gap(n, data):
    g = torch.Generator().manual_seed(n)
    if data == "moons":
        x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
        x1 = sample_toy("moons", n, generator=g).double()
    else:
        x0 = torch.randn(n, 64, generator=g, dtype=torch.float64)
        x1 = torch.randn(n, 64, generator=g, dtype=torch.float64) * 0.5 + 1
    cost = ot.dist(x0.numpy(), x1.numpy())
    w = np.full(n, 1.0 / n)
    emd_cost = ot.emd2(w, w, cost, numItermax=10_000_000) * n
    res = solve_assignment(cost, solver="auction")
    assert res.solver == "auction"
    assert len(set(res.perm.tolist())) == n  # 100% distinct pairs
    assert res.cost == pytest.approx(emd_cost, rel=1e-9)
    # the certificate: 0 <= cost - optimum <= gap, and the gap is at the 1e-12 level
    assert res.cost - emd_cost <= res.gap + 1e-9 * emd_cost
    assert 0 <= res.gap <= 1e-11 * res.cost
    # the torch entry point (float32 data, centred cost) reaches the same optimum
    perm = exact_ot_permutation(x0.float(), x1.float()).numpy()
    assert cost[np.arange(n), perm].sum() == pytest.approx(emd_cost, rel=1e-6)


def test_degenerate_inputs():
    z = np.zeros((8, 8))
    for solver in SOLVERS:
        res = solve_assignment(z, solver=solver)
        assert sorted(res.perm.tolist()) == list(range(8)) and res.cost == 0.0
    one = solve_assignment(np.array([[3.5]]))
    assert one.perm.tolist() == [0] and one.cost == 3.5
    # duplicated points on both sides (exact ties between blocks of rows and columns)
    rng = np.random.default_rng(0)
    a, b = np.repeat(rng.normal(size=(4, 2)), 8, axis=0), np.repeat(rng.normal(size=(4, 2)), 8, axis=0)
    cost = ot.dist(a, b)
    assert solve_assignment(cost, solver="auction").cost == pytest.approx(
        solve_assignment(cost, solver="emd").cost, rel=1e-12
    )
    # a shuffled copy is recovered exactly (optimum 0, unique)
    x = rng.normal(size=(40, 3))
    perm = rng.permutation(40)
    res = solve_assignment(ot.dist(x, x[perm]), solver="auction")
    assert np.array_equal(perm[res.perm], np.arange(40))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"square \(n, n\) matrix, got shape \(2, 3\)"):
        solve_assignment(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="cost must be finite"):
        solve_assignment(np.array([[0.0, np.inf], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="unknown solver 'hungarian'"):
        solve_assignment(np.zeros((2, 2)), solver="hungarian")


def test_without_the_kernel_auto_falls_back_to_emd_and_auction_warns(monkeypatch):
    monkeypatch.setattr(assignment._native, "load", lambda: None)
    monkeypatch.setattr(assignment._native, "build_error", lambda: "no C compiler found")
    cost = np.random.default_rng(1).random((6, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = solve_assignment(cost)  # auto: silent
    assert res.solver == "emd" and res.cost == pytest.approx(_brute_force(cost), rel=1e-12)
    with pytest.warns(AssignmentWarning, match="no C compiler found"):
        assert solve_assignment(cost, solver="auction").solver == "emd"


def test_the_avx2_and_portable_builds_return_the_same_assignment():
    # Where the CPU has AVX2 the loader uses a second, -mavx2 build; its scan does the same sums
    # and comparisons as the portable (SSE2) one, so every bid, price and permutation must match.
    if _native.load() is None or _native.variant() != "avx2":
        pytest.skip(f"this CPU runs only the portable build ({_native.variant()})")
    portable = _native._build()
    assert portable.fm_cpu_avx2() == 1
    g = torch.Generator().manual_seed(7)
    for n, dim in ((203, 2), (256, 2), (256, 64)):
        x0 = torch.randn(n, dim, generator=g, dtype=torch.float64)
        x1 = (
            sample_toy("8gaussians", n, generator=g).double()
            if dim == 2
            else torch.randn(n, dim, generator=g, dtype=torch.float64) + 1
        )
        cost = np.ascontiguousarray(ot.dist(x0.numpy(), x1.numpy()))
        outs = []
        for lib in (_native.load(), portable):
            iwork = np.empty((3 + _native.CANDIDATES) * n, np.int64)
            fwork, out = np.empty(2 * n), np.zeros(7)
            status = lib.fm_auction(
                n, cost.ctypes.data, 0.1, 10.0, 1e-12, 10**9, iwork.ctypes.data, fwork.ctypes.data, out.ctypes.data
            )
            assert status == 0
            # all but the work queue (iwork[2n:3n]): assignment, owners, lists, prices, thresholds, counts
            outs.append((iwork[: 2 * n], iwork[3 * n :], fwork, out))
        for a, b in zip(*outs):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("solver", ["auto", "emd"])
def test_a_stack_of_problems_is_solved_as_each_alone(solver):
    # solve_assignments: one kernel call for all the blocks of a block coupling; each block's
    # permutation must be that block's optimum (compared with solve_assignment and POT's emd)
    rng = np.random.default_rng(3)
    for b, n in ((1, 1), (5, 2), (16, 64), (3, 203)):
        x0, x1 = rng.normal(size=(b, n, 2)), rng.normal(size=(b, n, 2)) * 2 + 1
        costs = np.stack([ot.dist(x0[k], x1[k]) for k in range(b)])
        perms = assignment.solve_assignments(costs, solver=solver)
        assert perms.shape == (b, n) and perms.dtype == np.int64
        for k in range(b):
            assert sorted(perms[k].tolist()) == list(range(n))
            got = costs[k][np.arange(n), perms[k]].sum()
            alone = solve_assignment(costs[k], solver="emd").cost
            assert got == pytest.approx(alone, rel=1e-12, abs=1e-12)
    with pytest.raises(ValueError, match=r"stack of non-empty square matrices \(b, n, n\), got shape \(4, 4\)"):
        assignment.solve_assignments(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="costs must be finite"):
        assignment.solve_assignments(np.full((2, 3, 3), np.nan))
