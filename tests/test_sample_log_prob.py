"""`sample(..., log_prob=True)`: the density integrated forward with the samples in one solve equals
the closed form, the backward likelihood of the same points within solver tolerance, is chunk
invariant, and converges at the solver's order."""

from __future__ import annotations

import math

import pytest
import torch

import flowmatch
from flowmatch.sampling.likelihood import log_likelihood

DT = torch.float64


def affine_field(m: torch.Tensor, s: torch.Tensor):
    """The straight-line flow of z -> m + s z: x_t = (1 - t + t s) z + t m, carrying N(0, I) to
    N(m, diag(s^2))."""

    def field(x, t, cond=None):
        tt = t.reshape(-1, *[1] * (x.dim() - 1)).to(x.dtype)
        return (s - 1) * (x - tt * m) / (1 - tt + tt * s) + m

    return field


def gaussian_log_prob(x, m, s):
    z = (x - m) / s
    d = x[0].numel()
    return (-0.5 * z**2 - torch.log(s).expand_as(x)).reshape(len(x), -1).sum(1) - 0.5 * d * math.log(2 * math.pi)


def mlp(dim=3, seed=0):
    torch.manual_seed(seed)
    return flowmatch.MLP(dim, hidden=32, depth=2, activation="tanh").double()


def test_forward_log_prob_of_the_affine_flow_is_the_target_gaussian_density():
    m = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    s = torch.tensor([0.5, 2.0, 1.5], dtype=DT)
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    res = flowmatch.sample(affine_field(m, s), x0, solver="dopri5", atol=1e-9, rtol=1e-9, log_prob=True)
    torch.testing.assert_close(res.x, m + s * x0, atol=1e-7, rtol=0)
    torch.testing.assert_close(res.log_prob, gaussian_log_prob(res.x, m, s), atol=1e-7, rtol=0)


@pytest.mark.parametrize("solver,steps", [("dopri5", None), ("rk4", 200)])
def test_forward_log_prob_equals_the_backward_likelihood_of_the_samples(solver, steps):
    """A nonlinear field: the forward solve from x0 and the backward solve from its end agree."""
    model = mlp(seed=1)
    x0 = torch.randn(32, 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    kw = {"atol": 1e-8, "rtol": 1e-8} if steps is None else {"steps": steps}
    fwd = flowmatch.sample(model, x0, solver=solver, log_prob=True, **kw)
    back = log_likelihood(model, fwd.x, solver=solver, **kw)
    torch.testing.assert_close(back.log_prob, fwd.log_prob, atol=1e-5, rtol=0)
    torch.testing.assert_close(back.z, x0, atol=1e-5, rtol=0)
    # the samples themselves are those of a plain solve: the density rides along, it does not steer
    plain = flowmatch.sample(model, x0, solver=solver, **kw)
    torch.testing.assert_close(fwd.x, plain.x, atol=1e-6, rtol=0)


def test_fixed_step_log_prob_converges_at_second_order_for_midpoint():
    """A nonlinear field against a tight dopri5 reference: the error of log p halves twice per
    halving of the step."""
    model = mlp(seed=2)
    x0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(2), dtype=DT)
    ref = flowmatch.sample(model, x0, solver="dopri5", atol=1e-11, rtol=1e-11, log_prob=True).log_prob
    errs = []
    for steps in (4, 8, 16):
        res = flowmatch.sample(model, x0, solver="midpoint", steps=steps, log_prob=True)
        errs.append((res.log_prob - ref).abs().max().item())
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(1.6 < o < 2.4 for o in orders), (errs, orders)


def test_log_prob_is_chunk_invariant_images_and_a_custom_source():
    """(B, C, H, W) states, chunking, and source_log_prob for a N(0, 4 I) source."""
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(2, 2, 3, padding=1).double()

    def field(x, t, cond=None):
        return torch.tanh(conv(x)) * t.reshape(-1, 1, 1, 1).to(x.dtype)

    x0 = 2 * torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=DT)

    def src(z):
        return (-0.5 * (z / 2) ** 2 - math.log(2) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    class Source:
        log_prob = staticmethod(src)

    whole = flowmatch.sample(field, x0, solver="rk4", steps=20, log_prob=True, source_log_prob=src)
    parts = flowmatch.sample(field, x0, solver="rk4", steps=20, log_prob=True, source_log_prob=src, chunk_size=4)
    assert whole.x.shape == x0.shape
    torch.testing.assert_close(parts.log_prob, whole.log_prob, atol=1e-10, rtol=0)
    back = log_likelihood(field, whole.x, solver="rk4", steps=20, prior=Source())
    torch.testing.assert_close(back.log_prob, whole.log_prob, atol=1e-5, rtol=0)


def test_hutchinson_log_prob_is_unbiased_and_reproducible():
    model = mlp(dim=4, seed=4)
    x0 = torch.randn(8, 4, generator=torch.Generator().manual_seed(4), dtype=DT)

    def log_prob(seed=None, probes=1):
        kw = (
            {}
            if seed is None
            else dict(divergence="hutchinson", probes=probes, generator=torch.Generator().manual_seed(seed))
        )
        return flowmatch.sample(model, x0, solver="rk4", steps=10, log_prob=True, **kw).log_prob

    exact, one = log_prob(), log_prob(9)
    torch.testing.assert_close(one, log_prob(9), atol=0, rtol=0)
    assert not torch.allclose(one, exact, atol=1e-6)
    torch.testing.assert_close(log_prob(10, probes=4000), exact, atol=0.05, rtol=0)


def test_trajectory_is_the_x_part_and_bad_options_are_value_errors():
    model = mlp(seed=5)
    x0 = torch.randn(4, 3, dtype=DT)
    res = flowmatch.sample(model, x0, solver="euler", steps=5, log_prob=True, return_trajectory=True)
    assert res.require_trajectory().shape == (6, 4, 3)
    torch.testing.assert_close(res.require_trajectory()[-1], res.x)
    assert flowmatch.sample(model, x0, solver="euler", steps=5).log_prob is None
    with pytest.raises(ValueError, match="no mask"):
        flowmatch.sample(model, x0, steps=5, log_prob=True, mask=torch.ones(4, 3, dtype=DT))
    with pytest.raises(ValueError, match="divergence"):
        flowmatch.sample(model, x0, steps=5, log_prob=True, divergence="trace")
    with pytest.raises(ValueError, match="probes"):
        flowmatch.sample(model, x0, steps=5, log_prob=True, divergence="hutchinson", probes=0)


def test_log_prob_of_an_x1_network_is_finite_through_the_data_end():
    """The exact x1 predictor of N(0, I) -> N(m, c^2 I) on the cosine path, E[x1 | x_t] =
    m + a c^2 (x_t - a m) / (a^2 c^2 + s^2): its log p_1 is the target's density. The x1 -> velocity
    conversion takes its limit at sigma = 0 (t = 1) by torch.where; the branch not taken must not
    turn the divergence's gradient into NaN there (it did)."""
    from flowmatch.models import AsVelocity
    from flowmatch.paths import CosineScheduler

    sched = CosineScheduler()
    m, c = torch.tensor([1.0, -0.5], dtype=DT), 0.7

    def x1_hat(x, t, cond=None):
        o = sched(t.to(x.dtype))
        a, s = o.alpha[:, None], o.sigma[:, None]
        return m + a * c**2 * (x - a * m) / (a**2 * c**2 + s**2)

    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(6), dtype=DT)
    fwd = flowmatch.sample(AsVelocity(x1_hat, sched, "x1"), x0, solver="rk4", steps=100, log_prob=True)
    assert torch.isfinite(fwd.log_prob).all()
    torch.testing.assert_close(fwd.x, m + c * x0, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        fwd.log_prob, gaussian_log_prob(fwd.x, m, torch.full((2,), c, dtype=DT)), atol=1e-4, rtol=0
    )
