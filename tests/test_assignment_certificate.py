"""The assignment's certificate is relative to the optimum (issue 15 item 9): results that float64
cannot certify (tight clusters far apart, whose optimum is tiny against the spread of the costs)
are finished exactly by SciPy's linear_sum_assignment; emd's gap comes from its duals; the cost of
float32 data is float64 in every dimension."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from flowmatch.couplings import BlockOT, ExactOT
from flowmatch.data import sample_toy
from flowmatch.ot import assignment
from flowmatch.ot.assignment import certified_gap, solve_assignment, solve_assignments
from flowmatch.ot.transport import exact_ot_permutation


def _tight_clusters(
    n: int = 256, k: int = 8, radius: float = 1e4, std: float = 1e-2, seed: int = 0, dtype=torch.float64
):
    """x0, x1: n points each from k equal clusters (n / k points each) centred on a circle."""
    g = torch.Generator().manual_seed(seed)
    angle = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    centres = radius * torch.stack([angle.cos(), angle.sin()], 1)

    def draw():
        labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
        return (centres[labels] + std * torch.randn(n, 2, generator=g, dtype=torch.float64)).to(dtype)

    return draw(), draw()


def _cost64(x0: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
    a, b = x0.double().numpy(), x1.double().numpy()
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _lsa_cost(cost: np.ndarray) -> float:
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def _pair_cost(cost: np.ndarray, perm) -> float:
    return float(cost[np.arange(cost.shape[0]), np.asarray(perm)].sum())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tight_far_clusters_are_paired_at_the_optimum(dtype):
    # the optimum (~1e-2) is tiny against the spread of the costs (~1e8): the old stop,
    # gap <= rtol |primal| + rtol (mean row spread), accepted a pairing 1e-4 above it
    # (emd: 5e-3 above, reporting gap 0)
    x0, x1 = _tight_clusters(dtype=dtype)
    cost = _cost64(x0, x1)
    best = _lsa_cost(cost)
    assert 0 < best < 1e-6 * cost.mean()
    for solver in ("auto", "auction", "emd", "lsa"):
        res = solve_assignment(cost, solver=solver)
        assert sorted(res.perm.tolist()) == list(range(256))
        assert res.cost == pytest.approx(best, rel=1e-9, abs=0), solver
        assert res.cost - best <= res.gap + 1e-12 * best
        assert _pair_cost(cost, ExactOT(solver).pair(x0, x1).i1) == pytest.approx(best, rel=1e-9, abs=0), solver
    assert _pair_cost(cost, exact_ot_permutation(x0, x1)) == pytest.approx(best, rel=1e-9, abs=0)
    # as one block of a stack, and as a block coupling whose one block is the whole batch
    perms = solve_assignments(np.stack([cost, cost[::-1].copy()]))
    assert _pair_cost(cost, perms[0]) == pytest.approx(best, rel=1e-9, abs=0)
    assert _pair_cost(cost[::-1], perms[1]) == pytest.approx(best, rel=1e-9, abs=0)
    assert _pair_cost(cost, BlockOT(256).pair(x0, x1).i1) == pytest.approx(best, rel=1e-9, abs=0)


def test_the_certified_gap_bounds_the_distance_to_the_optimum_and_is_relative_to_it():
    g = torch.Generator().manual_seed(11)
    for n in (203, 512):
        x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
        x1 = sample_toy("moons", n, generator=g).double()
        cost = _cost64(x0, x1)
        best = _lsa_cost(cost)
        res = solve_assignment(cost, solver="auction")
        assert res.solver == "auction"  # the common case stays on the fast path
        assert res.cost - best <= res.gap <= 1e-12 * best
        assert res.gap > 0  # the float64 rounding of the dual is part of the bound
    # on the clusters, a pairing the certificate does not accept is not optimal: emd's own result
    x0, x1 = _tight_clusters()
    cost = _cost64(x0, x1)
    best = _lsa_cost(cost)
    w = np.full(256, 1 / 256)
    plan, log = ot.emd(w, w, cost, log=True, numItermax=10_000_000)
    perm = plan.argmax(1)
    gap = certified_gap(cost, perm, log["v"])
    assert _pair_cost(cost, perm) - best <= gap  # a true bound where emd is wrong
    assert gap > 1e-12 * best


def test_emd_reports_the_gap_of_its_duals():
    # not 0 by assumption: u_i = min_j (C_ij - v_j) from POT's column duals v, then
    # sum_i [(C_is(i) - v_s(i)) - u_i] plus the bound on its float64 rounding
    g = torch.Generator().manual_seed(12)
    n = 256
    cost = _cost64(
        torch.randn(n, 2, generator=g, dtype=torch.float64), sample_toy("8gaussians", n, generator=g).double()
    )
    res = solve_assignment(cost, solver="emd")
    assert res.solver == "emd"
    w = np.full(n, 1 / n)
    _, log = ot.emd(w, w, cost, log=True, numItermax=max(100_000, 50 * n * n))
    v = np.asarray(log["v"])
    u = (cost - v[None, :]).min(1)
    plain = _pair_cost(cost, res.perm) - (u.sum() + v.sum())  # primal - dual, no rounding bound
    assert res.gap == certified_gap(cost, res.perm, v)
    assert max(plain, 0.0) <= res.gap <= max(plain, 0.0) + 1e-13 * res.cost
    assert 0 < res.gap <= 1e-12 * res.cost
    assert res.cost == pytest.approx(_lsa_cost(cost), rel=1e-12, abs=0)


@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_64d_float32_batches_at_extreme_scales_are_paired_optimally(scale):
    # float32 squares overflow at 1e20 ("cost must be finite") and underflow at 1e-25 (43% above
    # the optimum): the cost of float32 data is float64 in every dimension
    g = torch.Generator().manual_seed(13)
    n = 256
    x0 = torch.randn(n, 64, generator=g) * scale
    x1 = (torch.randn(n, 64, generator=g) * 0.5 + 1) * scale
    cost = _cost64(x0, x1)
    best = _lsa_cost(cost)
    assert np.isfinite(best) and best > 0
    assert ExactOT().cost(x0, x1).dtype == torch.float64
    for solver in ("auto", "emd"):
        assert _pair_cost(cost, ExactOT(solver).pair(x0, x1).i1) == pytest.approx(best, rel=1e-9, abs=0)
    assert _pair_cost(cost, exact_ot_permutation(x0, x1)) == pytest.approx(best, rel=1e-9, abs=0)
    i1 = BlockOT(64).pair(x0, x1, generator=torch.Generator().manual_seed(0)).i1
    assert sorted(i1.tolist()) == list(range(n))
    assert math.isfinite(_pair_cost(cost, i1))


def test_an_uncertifiable_auction_is_finished_exactly():
    # rtol = 1e-300: no float64 bound can meet it, so the kernel reports so (status 2) and the
    # result is SciPy's exact one, said so in .solver, never the uncertified auction pairing
    g = torch.Generator().manual_seed(14)
    n = 128
    cost = _cost64(torch.randn(n, 2, generator=g, dtype=torch.float64), sample_toy("moons", n, generator=g).double())
    best = _lsa_cost(cost)
    res = solve_assignment(cost, solver="auction", rtol=1e-300)
    assert res.solver == "lsa" and res.gap == 0.0
    assert res.cost == pytest.approx(best, rel=1e-15, abs=0)
    perms = solve_assignments(np.stack([cost, cost.T.copy()]), rtol=1e-300)
    assert _pair_cost(cost, perms[0]) == pytest.approx(best, rel=1e-15, abs=0)
    assert _pair_cost(cost.T, perms[1]) == pytest.approx(best, rel=1e-15, abs=0)


def test_emd_whose_duals_do_not_certify_is_finished_exactly(monkeypatch):
    # POT's duals spoiled: its pairing may be right, but the certificate cannot say so, so the
    # exact finish is taken
    g = torch.Generator().manual_seed(15)
    n = 64
    cost = _cost64(
        torch.randn(n, 2, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64)
    )
    real_emd = ot.emd
    rng = np.random.default_rng(0)

    def spoiled(*args, **kwargs):
        plan, log = real_emd(*args, **kwargs)
        log["v"] = log["v"] + rng.normal(size=n)
        return plan, log

    monkeypatch.setattr(ot, "emd", spoiled)
    calls = []
    real_lsa = assignment._lsa
    monkeypatch.setattr(assignment, "_lsa", lambda c: calls.append(1) or real_lsa(c))
    res = solve_assignment(cost, solver="emd")
    assert calls and res.solver == "lsa" and res.gap == 0.0
    assert res.cost == pytest.approx(_lsa_cost(cost), rel=1e-15, abs=0)


def test_certified_gap_rejects_what_is_not_a_pairing():
    cost = np.arange(9.0).reshape(3, 3)
    # the row-minimum bound: (0 + 4 + 8) - (0 + 3 + 6), widened by 1 + (n + 2) u
    assert certified_gap(cost, np.array([0, 1, 2])) == (1 + 5 * np.finfo(float).eps) * 3.0
    with pytest.raises(ValueError, match=r"cost must be a finite non-empty square \(n, n\) matrix, got shape \(3, 2\)"):
        certified_gap(cost[:, :2], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"perm must be a permutation of range\(3\)"):
        certified_gap(cost, np.array([0, 0, 2]))
    with pytest.raises(ValueError, match=r"v must be a finite \(3,\) vector of column duals, got shape \(2,\)"):
        certified_gap(cost, np.array([0, 1, 2]), np.zeros(2))
