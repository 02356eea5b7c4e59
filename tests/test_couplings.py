"""Couplings: exact OT is the brute-force optimum and a permutation; Sinkhorn marginals."""

import itertools
import math
import warnings

import numpy as np
import ot
import pytest
import torch

from flowmatch.couplings import ExactOT, Independent, Sinkhorn, get_coupling
from flowmatch.transport import SinkhornWarning, sinkhorn_log, squared_cost


def _cost(x0, x1, i1):
    return float(((x0 - x1[i1]) ** 2).sum())


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_ot_equals_brute_force(n, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(n, 2, generator=g, dtype=torch.float64) * 2 + 1
    p = ExactOT()(x0, x1)
    assert torch.equal(p.i0, torch.arange(n))
    assert sorted(p.i1.tolist()) == list(range(n))  # a permutation
    best = min(_cost(x0, x1, list(perm)) for perm in itertools.permutations(range(n)))
    assert _cost(x0, x1, p.i1) == pytest.approx(best, rel=1e-12, abs=1e-12)


def test_exact_ot_matches_pot_emd_at_256_and_is_distinct():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(256, 2, generator=g)
    x1 = torch.randn(256, 2, generator=g) * 3 + torch.tensor([4.0, -1.0])
    p = ExactOT()(x0, x1)
    assert len(set(p.i1.tolist())) == 256
    C = ot.dist(x0.double().numpy(), x1.double().numpy())
    w = np.full(256, 1 / 256)
    emd_cost = ot.emd2(w, w, C, numItermax=10_000_000) * 256
    ours = _cost(x0.double(), x1.double(), p.i1)
    assert ours == pytest.approx(emd_cost, rel=1e-6)


def test_exact_ot_image_shaped_and_degenerate_ties():
    # Identical points make every permutation optimal: the result must still be a permutation.
    x0 = torch.zeros(8, 1, 2, 2)
    x1 = torch.zeros(8, 1, 2, 2)
    p = ExactOT()(x0, x1)
    assert sorted(p.i1.tolist()) == list(range(8))
    # Image-shaped batches: the OT pairing of a shuffled copy of x0 recovers the shuffle.
    g = torch.Generator().manual_seed(4)
    a = torch.randn(16, 1, 3, 3, generator=g)
    perm = torch.randperm(16, generator=g)
    p = ExactOT()(a, a[perm])
    torch.testing.assert_close(a[perm][p.i1], a)


def test_independent_is_identity_and_checks_sizes():
    x0, x1 = torch.randn(5, 2), torch.randn(5, 2)
    p = Independent()(x0, x1)
    assert torch.equal(p.i0, torch.arange(5)) and torch.equal(p.i1, torch.arange(5))
    with pytest.raises(ValueError, match="equal size, got 5 and 4"):
        Independent()(x0, x1[:4])
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(3,\)"):
        ExactOT()(x0, torch.randn(5, 3))


@pytest.mark.parametrize("reg", [1e-3, 0.05, 1.0, 50.0])
def test_sinkhorn_marginals_small_and_large_reg(reg):
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(64, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(48, 2, generator=g, dtype=torch.float64) + 3
    res = Sinkhorn(reg, max_iter=50000, tol=1e-7).plan(x0, x1)
    assert torch.isfinite(res.plan).all() and res.converged
    # The L1 row error is <= tol; columns are exact after the last g-update.
    assert float((res.plan.sum(1) - 1 / 64).abs().sum()) <= 1e-7
    torch.testing.assert_close(res.plan.sum(0), torch.full((48,), 1 / 48, dtype=torch.float64), atol=1e-12, rtol=0)


def test_sinkhorn_matches_pot_and_limits():
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(20, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(20, 2, generator=g, dtype=torch.float64) + 1
    C = squared_cost(x0, x1)
    eps = 0.5
    ours = sinkhorn_log(C, eps, max_iter=5000, tol=1e-12).plan
    w = np.full(20, 1 / 20)
    ref = ot.sinkhorn(w, w, C.numpy(), eps, method="sinkhorn_log", numItermax=5000, stopThr=1e-12)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-9)
    # Large epsilon -> product coupling; small epsilon -> the exact OT permutation.
    big = sinkhorn_log(C, 1e6).plan
    torch.testing.assert_close(big, torch.full_like(big, 1 / 400), atol=1e-6, rtol=0)
    small = sinkhorn_log(C, 5e-3 * float(C.mean()), max_iter=5000, tol=1e-5, warn=False).plan
    perm = ExactOT()(x0, x1).i1
    assert torch.equal(small.argmax(1), perm)


def test_sinkhorn_warns_when_not_converged_and_stays_finite():
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(128, 2, generator=g) * 10
    x1 = torch.randn(128, 2, generator=g) * 10 + 30
    with pytest.warns(SinkhornWarning, match="did not converge"):
        res = Sinkhorn(1e-6, max_iter=5, tol=1e-12).plan(x0, x1)
    assert torch.isfinite(res.plan).all()


def test_sinkhorn_pairs_follow_plan_and_generator():
    x0 = torch.tensor([[0.0], [10.0]])
    x1 = torch.tensor([[10.1], [0.1]])
    c = Sinkhorn(1e-3)  # sharp: pairs are the OT pairs
    p = c(x0, x1, generator=torch.Generator().manual_seed(0))
    assert p.i1.tolist() == [1, 0]
    g1, g2 = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    a, b = torch.randn(32, 2), torch.randn(32, 2)
    loose = Sinkhorn(10.0)
    assert torch.equal(loose(a, b, generator=g1).i1, loose(a, b, generator=g2).i1)


def test_sinkhorn_relative_reg_is_scale_free():
    g = torch.Generator().manual_seed(9)
    x0 = torch.randn(30, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(30, 2, generator=g, dtype=torch.float64) + 2
    p1 = Sinkhorn(0.1).plan(x0, x1).plan
    p2 = Sinkhorn(0.1).plan(5 * x0, 5 * x1).plan
    torch.testing.assert_close(p1, p2, atol=1e-10, rtol=1e-6)


def test_get_coupling_and_bad_input():
    assert isinstance(get_coupling("exact"), ExactOT)
    with pytest.raises(ValueError, match="unknown coupling 'hungarian'"):
        get_coupling("hungarian")
    with pytest.raises(ValueError, match="reg must be a finite number > 0, got -1"):
        Sinkhorn(-1)
    with pytest.raises(ValueError, match="reg_scale"):
        Sinkhorn(0.1, reg_scale="max")
