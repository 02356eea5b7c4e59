"""Discrete flow matching (issue 21): the mixture path's marginals, the CTMC sampler driven by the
exact posterior of a known token distribution (chi-squared over all sequences), the losses'
minimiser, guidance, padding and the Hamming OT coupling against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

from flowmatch.couplings.hamming import HammingOT, hamming_cost
from flowmatch.models.tokens import ExactPosterior, TokenTransformer, all_sequences
from flowmatch.objectives.discrete import DiscreteFlowMatcher, discrete_method, posterior_loss, posterior_token_loss
from flowmatch.paths.mixture import MixturePath, PolynomialKappa
from flowmatch.sampling.discrete import draw_categorical, sample_discrete

P_MIN = 1e-3  # the chi-squared tests' threshold (all draws are seeded: each test is deterministic)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_q(v: int, length: int, seed: int = 0) -> torch.Tensor:
    """A random categorical over the V^L sequences, far from a product of marginals."""
    q = torch.rand(v**length, generator=_gen(seed), dtype=torch.float64) ** 3
    return q / q.sum()


def _index(x: torch.Tensor, v: int) -> torch.Tensor:
    """Row index of each sequence in all_sequences(v, L) (base-v digits)."""
    powers = torch.tensor([v ** (x.shape[1] - 1 - i) for i in range(x.shape[1])])
    return (x * powers).sum(1)


def _chi2_p(samples: torch.Tensor, q: torch.Tensor, v: int) -> float:
    counts = torch.bincount(_index(samples, v), minlength=q.numel()).double()
    expected = q * counts.sum()
    return float(stats.chisquare(counts.numpy(), expected.numpy()).pvalue)


# ------------------------------------------------------------------ the mixture path


@pytest.mark.parametrize("source", ["mask", "uniform"])
@pytest.mark.parametrize("n", [1.0, 2.0])
def test_marginal_is_the_mixture_of_the_scheduler_exactly(source, n):
    """p_t(y | x1) by enumerating x0 ~ p0 and the jump (kappa_t) equals path.marginal, and
    P(x_t = x1) = kappa_t (mask) or kappa_t + (1 - kappa_t) / V (uniform)."""
    v = 4
    path = MixturePath(v, source, PolynomialKappa(n))
    x1 = torch.tensor([[0, 1, 2, 3]])
    for t in (0.0, 0.2, 0.5, 0.9, 1.0):
        k = t**n
        p = path.marginal(x1, torch.tensor([t], dtype=torch.float64))[0]
        x0_values = [v] if source == "mask" else list(range(v))
        for i, target in enumerate(x1[0].tolist()):
            brute = torch.zeros(path.num_states, dtype=torch.float64)
            for x0 in x0_values:
                brute[target] += k / len(x0_values)
                brute[x0] += (1 - k) / len(x0_values)
            torch.testing.assert_close(p[i], brute)
            expected = k if source == "mask" else k + (1 - k) / v
            assert float(p[i, target]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_path_samples_follow_the_marginal_chi_squared(source):
    v, n = 5, 40_000
    path = MixturePath(v, source, PolynomialKappa(2.0))
    g = _gen(1)
    x1 = torch.full((n, 1), 2)
    for t in (0.3, 0.7):
        tt = torch.full((n,), t)
        x0 = path.sample_source(x1, generator=g)
        s = path.sample(x0, x1, tt, generator=g)
        counts = torch.bincount(s.x_t[:, 0], minlength=path.num_states).double()
        expected = path.marginal(x1[:1], tt[:1])[0, 0] * n
        keep = expected > 0
        assert counts[~keep].sum() == 0
        assert stats.chisquare(counts[keep].numpy(), expected[keep].numpy()).pvalue > P_MIN
    # the test can fail: the samples at t = 0.7 are not distributed as the marginal at t = 0.3
    wrong = path.marginal(x1[:1], torch.tensor([0.3]))[0, 0] * n
    assert stats.chisquare(counts[keep].numpy(), wrong[keep].numpy()).pvalue < 1e-12


def test_padded_tokens_keep_their_values_along_the_path():
    path = MixturePath(3, "mask")
    x1 = torch.tensor([[0, 1, 2, 0]])
    mask = torch.tensor([[True, True, False, False]])
    s = path.sample(path.sample_source(x1), x1, torch.tensor([0.0]), mask=mask, generator=_gen())
    assert s.x_t.tolist() == [[3, 3, 2, 0]]


# ------------------------------------------------------------------ the sampler with the exact posterior


@pytest.mark.parametrize(
    "source, corrector, steps", [("mask", 0.0, 200), ("uniform", 0.0, 200), ("mask", 1.0, 200), ("uniform", 0.5, 200)]
)
def test_ctmc_sampler_with_the_exact_posterior_samples_the_distribution(source, corrector, steps):
    """q over the 27 sequences of length 3 from a vocabulary of 3: the Euler CTMC driven by the
    exact (Bayes) posterior reproduces q (chi-squared over all sequences), with and without the
    divergence-free corrector."""
    v, length, n = 3, 3, 20_000
    q = _random_q(v, length)
    path = MixturePath(v, source)
    model = ExactPosterior(q, path, length)
    g = _gen(2)
    x0 = path.sample_source(torch.zeros(n, length, dtype=torch.long), generator=g)
    res = sample_discrete(model, path, x0, steps=steps, corrector=corrector, generator=g)
    assert res.nfe == steps
    assert _chi2_p(res.x, q, v) > P_MIN


def test_one_step_samples_the_product_of_marginals_which_the_chi_squared_test_rejects():
    """The test above can fail: one step from the mask draws every token from its posterior
    marginal independently, i.e. from the product of q's marginals, not from q."""
    v, length, n = 3, 3, 20_000
    q = _random_q(v, length)
    path = MixturePath(v, "mask")
    g = _gen(3)
    x0 = path.sample_source(torch.zeros(n, length, dtype=torch.long), generator=g)
    res = sample_discrete(ExactPosterior(q, path, length), path, x0, steps=1, generator=g)
    assert _chi2_p(res.x, q, v) < 1e-12
    seqs = all_sequences(v, length)
    marg = [torch.zeros(v, dtype=torch.float64).index_add_(0, seqs[:, i], q) for i in range(length)]
    product = torch.stack([marg[0][s[0]] * marg[1][s[1]] * marg[2][s[2]] for s in seqs])
    assert _chi2_p(res.x, product, v) > P_MIN


class _TwoClassPosterior(torch.nn.Module):
    """Exact posteriors of q_0, q_1 for labels 0, 1 and of the mixture (q_0 + q_1) / 2 for the null label."""

    def __init__(self, q0, q1, path, length):
        super().__init__()
        self.posts = torch.nn.ModuleList(ExactPosterior(q, path, length) for q in (q0, q1, (q0 + q1) / 2))

    def forward(self, x, t, cond=None, mask=None):
        out = torch.stack([p(x, t) for p in self.posts])  # (3, B, L, V)
        c = torch.full((x.shape[0],), -1) if cond is None else cond
        which = torch.where(c < 0, 2, c)
        return out[which, torch.arange(x.shape[0])]


@pytest.mark.parametrize("w, expected", [(1.0, "q1"), (0.0, "null")])
def test_guidance_scale_one_is_conditional_and_zero_is_unconditional(w, expected):
    v, length, n = 3, 2, 20_000
    q0, q1 = _random_q(v, length, 4), _random_q(v, length, 5)
    path = MixturePath(v, "mask")
    model = _TwoClassPosterior(q0, q1, path, length)
    g = _gen(6)
    x0 = path.sample_source(torch.zeros(n, length, dtype=torch.long), generator=g)
    res = sample_discrete(model, path, x0, steps=100, cond=torch.ones(n, dtype=torch.long), guidance=w, generator=g)
    target = q1 if expected == "q1" else (q0 + q1) / 2
    other = (q0 + q1) / 2 if expected == "q1" else q1
    assert _chi2_p(res.x, target, v) > P_MIN
    assert _chi2_p(res.x, other, v) < 1e-12


def test_guidance_above_one_sharpens_towards_the_class():
    """w = 3 puts more mass than w = 1 on the sequences where q1 exceeds the mixture."""
    v, length, n = 3, 2, 20_000
    q0, q1 = _random_q(v, length, 4), _random_q(v, length, 5)
    path = MixturePath(v, "mask")
    model = _TwoClassPosterior(q0, q1, path, length)
    favoured = q1 > (q0 + q1) / 2
    mass = []
    for w in (1.0, 3.0):
        g = _gen(7)
        x0 = path.sample_source(torch.zeros(n, length, dtype=torch.long), generator=g)
        res = sample_discrete(model, path, x0, steps=50, cond=torch.ones(n, dtype=torch.long), guidance=w, generator=g)
        mass.append(float(favoured[_index(res.x, v)].double().mean()))
    assert mass[1] > mass[0] + 0.02


def test_the_sampler_keeps_padded_tokens_and_checks_its_input():
    path = MixturePath(3, "mask")
    model = ExactPosterior(_random_q(3, 2), path, 2)
    x0 = torch.tensor([[3, 1], [3, 3]])
    mask = torch.tensor([[True, False], [True, True]])
    res = sample_discrete(model, path, x0, steps=4, mask=mask, generator=_gen(), return_trajectory=True)
    assert (res.x[0, 1] == 1) and bool((res.x < 3).all())
    assert res.trajectory is not None and res.trajectory.shape == (5, 2, 2)
    assert bool((res.trajectory[:, 0, 1] == 1).all())
    with pytest.raises(ValueError, match=r"steps must be a positive integer, got 0"):
        sample_discrete(model, path, x0, steps=0)
    with pytest.raises(ValueError, match=r"x0 tokens must lie in \[0, 4\), got values in \[0, 7\]"):
        sample_discrete(model, path, torch.tensor([[7, 0]]))
    with pytest.raises(ValueError, match=r"corrector must be"):
        sample_discrete(model, path, x0, corrector=-1.0)


def test_draw_categorical_follows_its_probabilities():
    p = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64)
    x = draw_categorical(p.expand(50_000, 4), _gen(8))
    counts = torch.bincount(x, minlength=4).double()
    assert counts[1] == 0
    keep = p > 0
    assert stats.chisquare(counts[keep].numpy(), (p[keep] * 50_000).numpy()).pvalue > P_MIN


# ------------------------------------------------------------------ the losses


def _exact_expected_loss(table, q, path, length, t, loss):
    """E over x1 ~ q and x_t ~ p_t(. | x1) of the loss of a table of logits indexed by x_t, by enumeration."""
    v, s = path.vocab_size, path.num_states
    x1s = all_sequences(v, length)
    xts = all_sequences(s, length)
    marg = path.marginal(x1s, torch.full((x1s.shape[0],), t))  # (N1, L, S)
    w = torch.stack([marg[:, i, xts[:, i]] for i in range(length)]).prod(0)  # (N1, Nt)
    w = w * q[:, None]
    a, b = torch.meshgrid(torch.arange(x1s.shape[0]), torch.arange(xts.shape[0]), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    per = posterior_token_loss(table[b], x1s[a], xts[b], torch.full((a.numel(),), t), path, loss).sum(-1)  # (N1 * Nt,)
    return (per.double() * w.reshape(-1)).sum(), xts, w.sum(0)


@pytest.mark.parametrize("loss", ["ce", "gkl"])
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_the_loss_minimiser_is_the_exact_posterior(loss, source):
    v, length, t = 2, 2, 0.4
    q = _random_q(v, length, 9)
    path = MixturePath(v, source)
    s = path.num_states
    table = torch.zeros(s**length, length, v, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([table], lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        val, _, _ = _exact_expected_loss(table, q, path, length, t, loss)
        val.backward()
        return val

    opt.step(closure)
    _, xts, reach = _exact_expected_loss(table, q, path, length, t, loss)
    learned = torch.softmax(table.detach(), -1)
    exact = ExactPosterior(q, path, length)(xts, torch.full((xts.shape[0],), t)).exp()
    seen = reach > 1e-9  # states x_t that the path reaches
    torch.testing.assert_close(learned[seen], exact[seen], atol=1e-4, rtol=0)


def test_generalised_kl_matches_meta_flow_matching():
    fm_loss = pytest.importorskip("flow_matching.loss")
    fm_path = pytest.importorskip("flow_matching.path")
    sched = pytest.importorskip("flow_matching.path.scheduler")
    g = _gen(10)
    v = 5
    logits = torch.randn(6, 7, v, generator=g)
    x1 = torch.randint(0, v, (6, 7), generator=g)
    x_t = torch.where(torch.rand(6, 7, generator=g) < 0.5, x1, torch.randint(0, v, (6, 7), generator=g))
    t = torch.rand(6, generator=g) * 0.9
    ours = posterior_loss(logits, x1, x_t, t, MixturePath(v, "uniform", PolynomialKappa(2.0)), "gkl")
    meta = fm_loss.MixturePathGeneralizedKL(fm_path.MixtureDiscreteProbPath(sched.PolynomialConvexScheduler(2.0)))
    torch.testing.assert_close(ours, meta(logits, x1, x_t, t))


def test_the_loss_ignores_padded_tokens_and_the_network_is_padding_invariant():
    torch.manual_seed(0)
    net = TokenTransformer(5, 4, 6, dim=32, depth=2).eval()
    x = torch.randint(0, 5, (3, 6), generator=_gen(11))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
    y = x.clone()
    y[~mask] = (y[~mask] + 1) % 5
    t = torch.rand(3, generator=_gen(12))
    a, b = net(x, t, mask=mask), net(y, t, mask=mask)
    torch.testing.assert_close(a[mask], b[mask])
    fm = DiscreteFlowMatcher(MixturePath(4, "mask"))
    x1 = x.clamp(max=3)
    x1b = x1.clone()
    x1b[~mask] = (x1b[~mask] + 1) % 4
    x0 = fm.path.sample_source(x1)
    la = fm.loss(net, x0, x1, mask=mask, generator=_gen(13))
    lb = fm.loss(net, x0, x1b, mask=mask, generator=_gen(13))
    torch.testing.assert_close(la, lb)


def test_objective_errors_name_the_rule_and_value():
    path = MixturePath(3, "mask")
    with pytest.raises(ValueError, match=r"unknown discrete loss 'mse'; choose one of: ce, gkl"):
        DiscreteFlowMatcher(path, loss="mse")
    with pytest.raises(ValueError, match=r"t_max must be in \(0, 1\) for the generalised KL"):
        DiscreteFlowMatcher(path, loss="gkl", t_max=1.0)
    with pytest.raises(ValueError, match=r"unknown token source 'gaussian'; choose one of: mask, uniform"):
        MixturePath(3, "gaussian")
    fm = DiscreteFlowMatcher(path)
    with pytest.raises(ValueError, match=r"x1 tokens must lie in \[0, 3\), got values in \[0, 3\]"):
        fm.loss(
            lambda x, t, cond=None: torch.zeros(*x.shape, 3),
            torch.zeros(1, 2, dtype=torch.long),
            torch.tensor([[0, 3]]),
        )
    with pytest.raises(ValueError, match=r"must return logits of shape \(1, 2, 3\)"):
        fm.loss(
            lambda x, t, cond=None: torch.zeros(*x.shape, 4),
            torch.zeros(1, 2, dtype=torch.long),
            torch.zeros(1, 2, dtype=torch.long),
        )


# ------------------------------------------------------------------ Hamming OT


@pytest.mark.parametrize("n", [2, 5, 7])
def test_hamming_ot_is_the_brute_force_optimum(n):
    g = _gen(n)
    x0 = torch.randint(0, 3, (n, 6), generator=g)
    x1 = torch.randint(0, 3, (n, 6), generator=g)
    mask = torch.rand(n, 6, generator=g) < 0.8
    for m in (None, mask):
        cost = hamming_cost(x0, x1, m)
        brute = min(sum(float(cost[i, p[i]]) for i in range(n)) for p in itertools.permutations(range(n)))
        pairing = HammingOT()(x0, x1) if m is None else HammingOT().prepare(x0, x1, mask=m)()
        assert sorted(pairing.i1.tolist()) == list(range(n))
        assert float(cost[pairing.i0, pairing.i1].sum()) == brute
        for i, j in zip(pairing.i0.tolist(), pairing.i1.tolist()):  # the cost counts the target's valid tokens
            differ = x0[i] != x1[j]
            assert float(cost[i, j]) == float((differ if m is None else differ & m[j]).sum())


def test_ot_dfm_pairs_by_hamming_cost_and_keeps_fewer_jumps():
    path = MixturePath(4, "uniform")
    ot, ind = discrete_method("ot-dfm", path), discrete_method("dfm", path)
    assert isinstance(ot.coupling, HammingOT) and ind.coupling.is_identity
    g = _gen(14)
    x1 = torch.randint(0, 4, (64, 8), generator=g)
    x0 = path.sample_source(x1, generator=g)
    s_ot, _ = ot.sample(x0, x1, generator=_gen(15))
    s_ind, _ = ind.sample(x0, x1, generator=_gen(15))
    jumps_ot = float((s_ot.x0 != s_ot.x1).sum())
    jumps_ind = float((s_ind.x0 != s_ind.x1).sum())
    assert jumps_ot < jumps_ind
    assert jumps_ot == float(hamming_cost(x0, x1)[torch.arange(64), ot.coupling(x0, x1).i1].sum())
    expected_independent = 64 * 8 * (1 - 1 / 4)
    assert abs(jumps_ind - expected_independent) < 4 * math.sqrt(expected_independent)
