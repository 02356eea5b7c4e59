"""Couplings: exact OT is the brute-force optimum and a permutation; Sinkhorn marginals."""

import itertools
import warnings

import numpy as np
import ot
import pytest
import torch

from flowmatch.couplings import ExactOT, Independent, Sinkhorn, get_coupling
from flowmatch.ot.transport import (
    SinkhornWarning,
    batched_centered_squared_cost,
    centered_squared_cost,
    sinkhorn_log,
    squared_cost,
    squared_cost_f64,
)


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


# --------------------------------------------------------------------------------------------
# Conditional couplings: label-restricted OT and the mixed data + condition cost
# --------------------------------------------------------------------------------------------

from flowmatch.couplings import (  # noqa: E402
    BlockOT,
    ConditionalOT,
    PartialOT,
    UnbalancedOT,
    WithinLabels,  # noqa: E402
    pairs_from_plan,
)


def _perm_costs(cost: torch.Tensor):
    n = cost.shape[0]
    perms = torch.tensor(list(itertools.permutations(range(n))))
    return perms, cost[torch.arange(n), perms].sum(1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_label_restricted_ot_never_crosses_labels_and_is_optimal_within_each(seed):
    g = torch.Generator().manual_seed(seed)
    n = 7
    labels = torch.randint(0, 2, (n,), generator=g)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(n, 2, generator=g, dtype=torch.float64) + labels[:, None] * 1.5
    p = WithinLabels(ExactOT())(x0, x1, cond=labels)
    assert torch.equal(labels[p.i1], labels[p.i0])  # never pairs different labels
    assert sorted(p.i1.tolist()) == list(range(n))
    # brute force over all permutations that respect the labels
    perms, costs = _perm_costs(squared_cost(x0, x1))
    ok = (labels[perms] == labels[None, :]).all(1)
    assert _cost(x0, x1, p.i1) == pytest.approx(float(costs[ok].min()), rel=1e-12)


@pytest.mark.parametrize("weight", [0.0, 0.3, 3.0])
def test_conditional_ot_minimises_the_mixed_cost(weight):
    g = torch.Generator().manual_seed(11)
    n = 6
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    feats = torch.randn(n, 3, generator=g, dtype=torch.float64)
    p = ConditionalOT(weight)(x0, x1, cond=feats)
    # x0_i takes the condition of its position i: C_ij = |x0_i - x1_j|^2 + w |c_i - c_j|^2
    mixed = squared_cost(x0, x1) + weight * squared_cost(feats, feats)
    perms, costs = _perm_costs(mixed)
    assert float(mixed[torch.arange(n), p.i1].sum()) == pytest.approx(float(costs.min()), rel=1e-12)
    if weight == 0.0:
        assert torch.equal(p.i1, ExactOT()(x0, x1).i1)


def test_conditional_ot_with_labels_tends_to_label_restricted_ot():
    g = torch.Generator().manual_seed(12)
    n = 40
    labels = torch.randint(0, 3, (n,), generator=g)
    x0 = torch.randn(n, 2, generator=g)
    x1 = torch.randn(n, 2, generator=g) + torch.stack([3.0 * labels, torch.zeros(n)], 1)
    free = ExactOT()(x0, x1)
    assert not torch.equal(labels[free.i1], labels)
    soft = ConditionalOT(1e4)(x0, x1, cond=labels)  # lambda above every cost difference
    hard = WithinLabels(ExactOT())(x0, x1, cond=labels)
    assert torch.equal(labels[soft.i1], labels)
    assert _cost(x0.double(), x1.double(), soft.i1) == pytest.approx(_cost(x0.double(), x1.double(), hard.i1), rel=1e-6)
    # the matcher hands the condition to it
    from flowmatch.objectives.cfm import FlowMatcher
    from flowmatch.paths import LinearPath

    s = FlowMatcher(LinearPath(0.0), ConditionalOT(1e4)).sample(x0, x1, labels)
    assert torch.equal(s.cond, labels)


# --------------------------------------------------------------------------------------------
# Sinkhorn at small regularisation; sampling pairs without replacement
# --------------------------------------------------------------------------------------------


def test_eps_scaling_reaches_the_same_plan_and_small_reg_stays_finite():
    # (at eps = 0.01 mean(C) Sinkhorn needs 300 to 5000+ iterations depending on the draw; with
    # this one both variants converge, eps scaling in about 20% fewer iterations)
    g = torch.Generator().manual_seed(21)
    x0 = torch.randn(64, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(64, 2, generator=g, dtype=torch.float64) * 2 + 3
    C = squared_cost(x0, x1)
    eps = 0.01 * float(C.mean())
    scaled = sinkhorn_log(C, eps, max_iter=5000, tol=1e-9)
    plain = sinkhorn_log(C, eps, max_iter=5000, tol=1e-9, eps_scaling=False)
    assert scaled.converged and plain.converged
    torch.testing.assert_close(scaled.plan, plain.plan, atol=1e-8, rtol=0)  # same fixed point
    # far below the cost's scale: finite, marginals still close, columns exact
    tiny = sinkhorn_log(C, 1e-6 * float(C.mean()), max_iter=200, warn=False)
    assert torch.isfinite(tiny.plan).all() and torch.isfinite(tiny.log_plan).all()
    torch.testing.assert_close(tiny.plan.sum(0), torch.full((64,), 1 / 64, dtype=torch.float64), atol=1e-10, rtol=0)


def test_sinkhorn_that_cannot_converge_warns_and_falls_back_to_exact_ot():
    g = torch.Generator().manual_seed(14)
    x0 = torch.randn(64, 2, generator=g)
    x1 = torch.randn(64, 2, generator=g) + 2
    with pytest.warns(SinkhornWarning, match="pairing by exact OT"):
        p = Sinkhorn(1e-9, max_iter=3, tol=1e-12)(x0, x1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(p.i1, ExactOT()(x0, x1).i1)
    with pytest.warns(SinkhornWarning, match="sampling the last plan"):
        q = Sinkhorn(1e-9, max_iter=3, tol=1e-12, fallback="plan")(x0, x1, generator=torch.Generator())
    assert q.i1.min() >= 0 and q.i1.max() < 64


@pytest.mark.parametrize("sampling", ["sequential", "gumbel", "round"])
@pytest.mark.parametrize("reg", [0.05, 1.0, 100.0])
def test_sampling_without_replacement_gives_distinct_pairs(sampling, reg):
    g = torch.Generator().manual_seed(15)
    x0 = torch.randn(96, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(96, 2, generator=g, dtype=torch.float64) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: the pairs come from the plan, not the fallback
        p = Sinkhorn(reg, sampling=sampling, max_iter=5000)(x0, x1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(p.i0, torch.arange(96))
    assert sorted(p.i1.tolist()) == list(range(96))  # a permutation: 100% distinct pairs
    rows = Sinkhorn(reg, max_iter=5000)(x0, x1, generator=torch.Generator().manual_seed(1))
    if reg == 100.0:  # nearly the product plan: rows sampling repeats targets, these never do
        assert len(set(rows.i1.tolist())) < 80


def test_round_of_a_sinkhorn_plan_is_the_exact_ot_permutation():
    g = torch.Generator().manual_seed(16)
    x0, x1 = torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g) * 2
    exact = ExactOT()(x0, x1).i1
    for reg in (0.05, 1.0, 10.0):  # whatever the regularisation
        assert torch.equal(Sinkhorn(reg, sampling="round")(x0, x1).i1, exact)


def test_gumbel_pairs_without_sinkhorn_equal_the_pairs_of_the_converged_plan():
    # perturb-and-MAP sees the plan only through sum_i log P_is(i), in which the Sinkhorn
    # potentials are a constant: exact OT of C / eps - G gives the plan's pairs, at any eps.
    from flowmatch.couplings.sampling import draw_sampling_noise
    from flowmatch.couplings.sampling import pairs_from_plan as from_plan

    g = torch.Generator().manual_seed(21)
    x0 = torch.randn(64, 2, generator=g, dtype=torch.float64)
    x1 = torch.randn(64, 2, generator=g, dtype=torch.float64) * 1.5 + 1
    for reg in (0.05, 0.5, 5.0):
        c = Sinkhorn(reg, sampling="gumbel", max_iter=20000, tol=1e-10)
        res = c.plan(x0, x1)
        assert res.converged
        noise = draw_sampling_noise("gumbel", 64, 64, torch.Generator().manual_seed(int(reg * 100)))
        _, via_plan = from_plan(res.log_plan, "gumbel", noise)
        direct = c._solve(x0, x1, noise)
        assert torch.equal(direct.i1, via_plan)
    # and where Sinkhorn cannot converge (clusters far apart, tiny epsilon) it needs no fallback
    far = torch.cat([x0[:32] - 40, x0[32:] + 40])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = Sinkhorn(1e-4, sampling="gumbel", max_iter=20)(far, x1, generator=torch.Generator().manual_seed(0))
    assert sorted(p.i1.tolist()) == list(range(64))


def test_sinkhorn_gives_up_early_only_when_the_measured_rate_cannot_reach_tol():
    from flowmatch.data.toy2d import sample_toy

    g = torch.Generator().manual_seed(3)  # clusters far apart at epsilon = 2: slow, linear rate
    x0 = sample_toy("moons-wide", 96, generator=g).double()
    x1 = sample_toy("8gaussians-wide", 96, generator=g).double()
    C = squared_cost(x0, x1)
    patient = sinkhorn_log(C, 2.0, max_iter=800, tol=1e-12, warn=False, give_up_early=False)
    early = sinkhorn_log(C, 2.0, max_iter=800, tol=1e-12, warn=False)
    assert not patient.converged and not early.converged  # the outcome is the same ...
    assert early.n_iter < 0.75 * patient.n_iter  # ... sooner
    # a reachable tolerance is reached, in exactly the same iterations as without the rule
    on_time = sinkhorn_log(C, 2.0, max_iter=800, tol=1e-6, warn=False)
    plain = sinkhorn_log(C, 2.0, max_iter=800, tol=1e-6, warn=False, give_up_early=False)
    assert on_time.converged and on_time.n_iter == plain.n_iter
    torch.testing.assert_close(on_time.plan, plain.plan, rtol=0, atol=0)


def test_plan_sampling_laws_on_a_3x3_plan():
    plan = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]], dtype=torch.float64) / 3
    lp = plan.log()
    g = torch.Generator().manual_seed(0)
    counts_rows = torch.zeros(3, 3)
    perms = {}
    trials = 1500
    from flowmatch.couplings.sampling import draw_sampling_noise as _draw_sampling_noise

    for _ in range(trials):
        i0, i1 = pairs_from_plan(lp, "rows", _draw_sampling_noise("rows", 3, 3, g))
        counts_rows[i0, i1] += 1
        _, j = pairs_from_plan(lp, "gumbel", _draw_sampling_noise("gumbel", 3, 3, g))
        perms[tuple(j.tolist())] = perms.get(tuple(j.tolist()), 0) + 1
    # rows: each row follows P(j | i)
    torch.testing.assert_close(counts_rows / trials, (plan * 3).float(), atol=0.04, rtol=0)
    # gumbel on a product plan: a uniformly random permutation
    flat = torch.full((3, 3), 1 / 9, dtype=torch.float64).log()
    uniform = {}
    for _ in range(1500):
        _, j = pairs_from_plan(flat, "gumbel", _draw_sampling_noise("gumbel", 3, 3, g))
        uniform[tuple(j.tolist())] = uniform.get(tuple(j.tolist()), 0) + 1
    assert len(uniform) == 6 and all(abs(c / 1500 - 1 / 6) < 0.04 for c in uniform.values())
    # gumbel on the sharp-ish plan favours its heavy entries: (0, 2, 1) has the largest product
    assert max(perms, key=perms.get) == (0, 2, 1)


# --------------------------------------------------------------------------------------------
# Large batches: block OT
# --------------------------------------------------------------------------------------------


def test_batched_costs_are_each_problems_centred_cost_and_the_distances():
    g = torch.Generator().manual_seed(16)
    a = torch.randn(3, 5, 4, generator=g, dtype=torch.float64) * 10 + 100  # far from 0: centring matters
    b = torch.randn(3, 6, 4, generator=g, dtype=torch.float64) * 10 + 100
    costs = batched_centered_squared_cost(a, b)
    assert costs.shape == (3, 5, 6)
    for k in range(3):
        brute = ((a[k, :, None, :] - b[k, None, :, :]) ** 2).sum(-1)
        torch.testing.assert_close(costs[k], centered_squared_cost(a[k], b[k]), rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(costs[k], brute, rtol=1e-10, atol=1e-9)
        torch.testing.assert_close(squared_cost(a[k], b[k]), brute, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5, 12])
def test_the_float64_cost_of_exact_ot_is_the_sum_of_squared_differences(dim, monkeypatch):
    # dim <= 4: the compiled kernel sums the squared differences in float64 (one rounding per
    # term, hence exact to ~1e-15 even far from the origin); beyond, or without the kernel, the
    # centred matrix product in float64 (float32 data too: no float32 rounding, overflow or
    # underflow).
    g = torch.Generator().manual_seed(dim)
    a = torch.randn(37, dim, generator=g) * 3 + 50
    b = torch.randn(41, dim, generator=g) + 49
    brute = ((a.double()[:, None, :] - b.double()[None, :, :]) ** 2).sum(-1)
    cost = squared_cost_f64(a, b)
    assert cost.dtype == torch.float64 and cost.shape == (37, 41)
    if dim <= 4:
        torch.testing.assert_close(cost, brute, rtol=1e-14, atol=0)
    else:
        torch.testing.assert_close(cost, brute, rtol=1e-12, atol=1e-11)
        assert not torch.equal(cost, brute)  # the float64 product, not the differences
    assert torch.equal(ExactOT().cost(a, b), cost)
    from flowmatch.ot import native as _native

    monkeypatch.setattr(_native, "load", lambda: None)
    torch.testing.assert_close(squared_cost_f64(a, b), brute, rtol=1e-12, atol=1e-11)


def test_block_ot_in_one_dimension_is_exact_whatever_the_block_size():
    g = torch.Generator().manual_seed(17)
    x0 = torch.randn(300, 1, generator=g, dtype=torch.float64)
    x1 = torch.randn(300, 1, generator=g, dtype=torch.float64) * 3 + 1
    exact = _cost(x0, x1, ExactOT()(x0, x1).i1)
    for block in (7, 64, 300):
        p = BlockOT(block, partition="sorted")(x0, x1)
        assert sorted(p.i1.tolist()) == list(range(300))
        assert _cost(x0, x1, p.i1) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("partition", ["sorted", "random"])
def test_block_ot_is_a_permutation_optimal_within_each_block(partition):
    g = torch.Generator().manual_seed(18)
    x0 = torch.randn(1000, 2, generator=g)
    x1 = sample_toy_moons(1000, g)
    c = BlockOT(128, partition=partition)
    p = c(x0, x1, generator=torch.Generator().manual_seed(2))
    assert sorted(p.i1.tolist()) == list(range(1000))
    exact = _cost(x0.double(), x1.double(), ExactOT()(x0, x1).i1)
    ours = _cost(x0.double(), x1.double(), p.i1)
    indep = _cost(x0.double(), x1.double(), torch.arange(1000))
    assert exact <= ours * (1 + 1e-9) and ours < indep
    # no pair can be improved by a swap inside its block (2-opt optimality of each block)
    assert BlockOT(2000)(x0, x1).i1.tolist() == ExactOT()(x0, x1).i1.tolist()  # one block = exact


def sample_toy_moons(n, g):
    from flowmatch.data import sample_toy

    return sample_toy("moons", n, generator=g)


# --------------------------------------------------------------------------------------------
# Unbalanced and partial OT
# --------------------------------------------------------------------------------------------


def _with_outlier(seed=19, n=40):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x0[0] = torch.tensor([40.0, 40.0], dtype=torch.float64)  # far from every target
    x1 = torch.randn(n, 2, generator=g, dtype=torch.float64) + 0.5
    return x0, x1


def test_partial_ot_drops_the_outlier_and_is_optimal():
    x0, x1 = _with_outlier()
    p = PartialOT(mass=39 / 40)(x0, x1)
    assert len(p) == 39 and 0 not in p.i0.tolist()
    assert len(set(p.i1.tolist())) == 39 and len(set(p.i0.tolist())) == 39
    # brute force on a tiny problem: best 3 pairs out of 5 x 5
    g = torch.Generator().manual_seed(20)
    a, b = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    q = PartialOT(mass=0.6)(a, b)
    C = squared_cost(a, b)
    best = min(
        float(C[list(r), list(c)].sum())
        for r in itertools.combinations(range(5), 3)
        for c in itertools.permutations(range(5), 3)
    )
    assert len(q) == 3 and float(C[q.i0, q.i1].sum()) == pytest.approx(best, rel=1e-9)
    assert torch.equal(PartialOT(1.0)(a, b).i1, ExactOT()(a, b).i1)


def test_unbalanced_ot_gives_the_outlier_little_mass_and_tends_to_balanced():
    x0, x1 = _with_outlier()
    c = UnbalancedOT(reg=0.05, reg_m=0.05)
    plan = c.plan(x0, x1)
    assert torch.isfinite(plan).all()
    assert float(plan[0].sum()) < 0.05 * float(plan[1:].sum(1).mean())
    p = c(x0, x1, generator=torch.Generator().manual_seed(0))
    assert len(p) == 40 and 0 not in p.i0.tolist()  # joint sampling skips the outlier
    # reg_m -> inf: the balanced entropic plan
    y0, y1 = x0[1:], x1[1:]
    big = UnbalancedOT(reg=0.5, reg_m=1e4).plan(y0, y1)
    bal = Sinkhorn(0.5, tol=1e-9, max_iter=5000).plan(y0, y1).plan
    torch.testing.assert_close(big, bal, atol=2e-4 / 39, rtol=0.05)


def test_new_couplings_bad_input():
    with pytest.raises(ValueError, match="mass must be in \\(0, 1\\], got 0"):
        PartialOT(0)
    with pytest.raises(ValueError, match="block_size must be a positive integer, got 0"):
        BlockOT(0)
    with pytest.raises(ValueError, match="unknown sampling 'multinomial'"):
        Sinkhorn(0.1, sampling="multinomial")
    with pytest.raises(ValueError, match="cond_weight must be a finite number >= 0, got -1"):
        ConditionalOT(-1)
    with pytest.raises(ValueError, match="needs n <= m"):
        pairs_from_plan(torch.zeros(3, 2), "sequential", (torch.arange(3), torch.zeros(3, 2)))
    assert isinstance(get_coupling("block", block_size=64), BlockOT)


def test_kernel_and_log_domain_sinkhorn_agree(monkeypatch):
    import flowmatch.ot.transport as transport

    g = torch.Generator().manual_seed(23)
    x0, x1 = torch.randn(80, 2, generator=g), torch.randn(70, 2, generator=g) * 2 + 1
    C = squared_cost(x0, x1)
    eps = float(C.max() - C.min()) / 150  # within the kernel's range, 4 epsilon-scaling levels
    kernel = sinkhorn_log(C, eps, max_iter=5000, tol=1e-6)
    monkeypatch.setattr(transport, "KERNEL_MAX_RATIO", 0.0)  # every level in the log domain
    logdom = sinkhorn_log(C, eps, max_iter=5000, tol=1e-6)
    assert kernel.converged and logdom.converged and kernel.plan.dtype == torch.float32
    assert float((kernel.plan.double() - logdom.plan.double()).abs().sum()) < 2e-6  # both within tol
    torch.testing.assert_close(kernel.plan.sum(0), torch.full((70,), 1 / 70), atol=1e-6, rtol=0)
