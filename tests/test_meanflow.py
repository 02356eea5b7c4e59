"""MeanFlow (issue 22): the target is the exact average velocity for fields with a closed form, the
JVP matches finite differences, h = 0 is flow matching, one step of the exact average field is the
ODE's endpoint, and training gives one-step samples with the target's spread where flow matching's
one Euler step collapses them."""

from __future__ import annotations

import pytest
import torch

import flowmatch
from flowmatch.models.average import AverageVelocityMLP, call_average
from flowmatch.models.contract import ModelContractError
from flowmatch.objectives import FlowMatcher
from flowmatch.objectives.meanflow import MeanFlowMatcher, meanflow_target
from flowmatch.paths import LinearPath
from flowmatch.sampling.average import sample_average

DT = torch.float64
M = torch.tensor([1.5, -1.0], dtype=DT)
S = torch.tensor([0.5, 2.0], dtype=DT)


def _pad(t, x):
    return t.reshape(-1, *[1] * (x.dim() - 1)).to(x.dtype)


def affine_v(x, t, cond=None):
    """The straight-line flow of z -> M + S z: x_t = (1 - t + t S) z + t M."""
    tt = _pad(t, x)
    return (S - 1) * (x - tt * M) / (1 - tt + tt * S) + M


def affine_u(x, t, cond=None, h=None):
    """Its exact average velocity over [t, t + h] from x_t = x (the velocity at h = 0)."""
    if h is None:
        return affine_v(x, t)
    tt, hh = _pad(t, x), _pad(h, x)
    z = (x - tt * M) / (1 - tt + tt * S)
    end = (1 - (tt + hh) + (tt + hh) * S) * z + (tt + hh) * M
    return torch.where(hh > 0, (end - x) / torch.where(hh > 0, hh, torch.ones_like(hh)), affine_v(x, t))


def _points(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=DT)
    t = 0.9 * torch.rand(n, generator=g, dtype=DT)
    h = (1 - t) * torch.rand(n, generator=g, dtype=DT)
    return x, t, h


def test_the_target_of_the_exact_average_velocity_is_itself_affine_flow():
    x, t, h = _points()
    u, target = meanflow_target(affine_u, x, t, h, affine_v(x, t))
    torch.testing.assert_close(target, u, atol=1e-10, rtol=0)


def test_the_target_of_the_exact_average_velocity_is_itself_linear_ode():
    """v = A x (diagonal): u(x, t, h) = (exp(A h) - 1) / h x; a wrong u is not a fixed point."""
    a = torch.tensor([0.7, -1.3], dtype=DT)

    def u(x, t, cond=None, h=None):
        hh = _pad(h, x)
        return torch.expm1(a * hh) / hh * x

    x, t, h = _points(seed=1)
    h = h + 0.05
    out, target = meanflow_target(u, x, t, h, a * x)
    torch.testing.assert_close(target, out, atol=1e-10, rtol=0)

    def wrong(x, t, cond=None, h=None):
        return u(x, t, h=h) * 1.1

    out, target = meanflow_target(wrong, x, t, h, a * x)
    assert (target - out).abs().max() > 1e-2


def test_the_jvp_is_the_finite_difference_of_u_along_the_flow():
    torch.manual_seed(0)
    net = AverageVelocityMLP(2, hidden=32).double()
    x, t, h = _points(seed=2)
    v = torch.randn_like(x)
    u, target = meanflow_target(net, x, t, h, v)
    eps = 1e-6
    with torch.no_grad():
        plus = net(x + eps * v, t + eps, h=h - eps)
        minus = net(x - eps * v, t - eps, h=h + eps)
    du_dt = (plus - minus) / (2 * eps)
    torch.testing.assert_close(target, v + h[:, None] * du_dt, atol=1e-7, rtol=0)
    assert u.requires_grad and not target.requires_grad


def test_the_average_velocity_at_h_0_is_the_velocity_and_h_none_means_0():
    x, t, _ = _points(seed=3)
    torch.testing.assert_close(affine_u(x, t, h=torch.full_like(t, 1e-7)), affine_v(x, t), atol=1e-5, rtol=0)
    net = AverageVelocityMLP(2, hidden=16).double()
    torch.testing.assert_close(net(x, t), net(x, t, h=torch.zeros_like(t)))


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_steps_of_the_exact_average_field_land_on_the_ode_endpoint(steps):
    x0 = torch.randn(128, 2, generator=torch.Generator().manual_seed(4), dtype=DT)
    res = sample_average(affine_u, x0, steps=steps)
    torch.testing.assert_close(res.x, M + S * x0, atol=1e-10, rtol=0)
    ode = flowmatch.sample(affine_v, x0, solver="dopri5", atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(res.x, ode.x, atol=1e-6, rtol=0)
    assert res.nfe == steps


def test_ratio_0_without_weighting_is_the_flow_matching_loss():
    torch.manual_seed(5)
    net = AverageVelocityMLP(2, hidden=16)
    x0, x1 = torch.randn(64, 2), torch.randn(64, 2) + 2
    mf = MeanFlowMatcher(LinearPath(0.1), ratio=0.0, weight_power=0.0)
    fm = FlowMatcher(LinearPath(0.1))
    ours = mf.loss(net, x0, x1, generator=torch.Generator().manual_seed(6))
    theirs = fm.loss(net, x0, x1, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(ours, theirs)


def test_meanflow_trains_one_step_samples_that_flow_matching_collapses():
    """N(0, I) -> N(M, diag S^2), independent pairs: one Euler step of the flow matching field is
    x0 + v(x0, 0) = E[x1] (every sample at the mean); MeanFlow's one step keeps the spread."""
    m, s = M.float(), S.float()

    def train(ratio):
        torch.manual_seed(0)
        net = AverageVelocityMLP(2, hidden=64)
        mf = MeanFlowMatcher(LinearPath(0.0), ratio=ratio)
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(1500):
            x0 = torch.randn(256, 2, generator=g)
            x1 = m + s * torch.randn(256, 2, generator=g)
            loss = mf.loss(net, x0, x1, generator=g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net

    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    one = sample_average(train(0.5), x0, steps=1).x
    assert (one.mean(0) - m).abs().max() < 0.15, one.mean(0)
    assert ((one.std(0) - s).abs() / s).max() < 0.15, one.std(0)
    collapsed = sample_average(train(0.0), x0, steps=1).x
    assert (collapsed.std(0) / s).max() < 0.4, collapsed.std(0)


def test_contract_errors_are_one_line():
    with pytest.raises(ModelContractError, match="model\\(x, t, cond=None, h=None\\)"):
        call_average(lambda x, t, cond=None: x, torch.zeros(2, 2), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="ratio"):
        MeanFlowMatcher(LinearPath(0.0), ratio=1.5)
    with pytest.raises(ValueError, match="no mask"):
        MeanFlowMatcher(LinearPath(0.0)).sample(torch.zeros(2, 2), torch.zeros(2, 2), mask=torch.ones(2, 2))
