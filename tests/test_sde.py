"""flowmatch.sample_sde: Euler-Maruyama convergence on an OU process, reproducibility, the closed-form
Schrödinger bridge reproduced by the SDE with the exact fields, endpoint handling, input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from flowmatch.models import MLP, FlowAndScore
from flowmatch.sampling.ode import sample
from flowmatch.sampling.sde import sample_sde
from flowmatch.trajectory.gaussian_bridge import GaussianBridge

F64 = torch.float64


class OU(nn.Module):
    """dX = -theta X dt + g dW written as v + (g^2/2) s with v = (c - theta) x and s = -(2c/g^2) x,
    so that the drift is right only if sample_sde adds exactly (g^2/2) s."""

    def __init__(self, theta: float, g: float, c: float = 0.7):
        super().__init__()
        self.theta, self.g, self.c = theta, g, c

    def forward(self, x, t, cond=None):
        return (self.c - self.theta) * x

    def score(self, x, t, cond=None):
        return -(2 * self.c / self.g**2) * x


def brownian_noise(n_fine: int, n: int, generator) -> torch.Tensor:
    return torch.randn(n_fine, n, 1, generator=generator, dtype=F64)


def coarsen(z_fine: torch.Tensor, steps: int) -> torch.Tensor:
    """Standard normals of the same Brownian path on a grid of ``steps`` intervals."""
    m = z_fine.shape[0] // steps
    return z_fine.reshape(steps, m, *z_fine.shape[1:]).sum(1) / math.sqrt(m)


def test_euler_maruyama_strong_and_weak_order_one_on_ou():
    """OU dX = -2 X dt + dW, X0 = 1, T = 1: on one Brownian path per sample (coarse increments =
    sums of fine ones), E|X_K - X| ~ h (strong order 1: additive noise) and the errors of E[X],
    E[X^2] ~ h (weak order 1). The reference X is the exact solution e^{-T theta} x0 +
    g sum_k e^{-theta (T - s_k)} dW_k on a grid of 1024 (midpoint weights)."""
    theta, g, n, fine = 2.0, 1.0, 4000, 1024
    z = brownian_noise(fine, n, torch.Generator().manual_seed(0))
    x0 = torch.ones(n, 1, dtype=F64)
    s_mid = (torch.arange(fine, dtype=F64) + 0.5) / fine
    dw = z.squeeze(-1) / math.sqrt(fine)
    x_ref = math.exp(-theta) + g * (torch.exp(-theta * (1 - s_mid))[:, None] * dw).sum(0)
    ks = [8, 16, 32, 64]
    strong, weak1, weak2 = [], [], []
    for k in ks:
        xk = sample_sde(OU(theta, g), x0, sigma=g, steps=k, noise=coarsen(z, k), last_step="sde").x[:, 0]
        strong.append(float((xk - x_ref).abs().mean()))
        weak1.append(abs(float((xk - x_ref).mean())))
        weak2.append(abs(float((xk**2 - x_ref**2).mean())))
    h = np.log([1.0 / k for k in ks])
    for name, err in (("strong", strong), ("weak E[X]", weak1), ("weak E[X^2]", weak2)):
        order = np.polyfit(h, np.log(err), 1)[0]
        assert 0.85 < order < 1.2, (name, order, err)


def test_euler_maruyama_moments_match_the_scheme_and_the_ou_law():
    """Sample mean and variance equal the Euler-Maruyama recursion m' = (1 - theta h) m,
    v' = (1 - theta h)^2 v + g^2 h (noise scale g sqrt(h)), within 4 standard errors; at 400
    steps they equal the OU law mean x0 e^{-theta}, variance g^2 (1 - e^{-2 theta}) / (2 theta)."""
    theta, g, n = 2.0, 1.0, 40_000
    x0 = torch.ones(n, 1, dtype=F64)
    for steps, exact in ((10, False), (400, True)):
        x = sample_sde(
            OU(theta, g), x0, sigma=g, steps=steps, last_step="sde", generator=torch.Generator().manual_seed(steps)
        ).x[:, 0]
        h = 1.0 / steps
        if exact:
            m, v = math.exp(-theta), g**2 * (1 - math.exp(-2 * theta)) / (2 * theta)
            # 4 standard errors plus the O(h) bias of the scheme (7e-4 and 1e-3 at h = 1/400)
            tol_m, tol_v = 4 * math.sqrt(v / n) + 0.001, 4 * v * math.sqrt(2 / n) + 0.002
        else:
            m, v = (1 - theta * h) ** steps, 0.0
            for _ in range(steps):
                v = (1 - theta * h) ** 2 * v + g**2 * h
            tol_m, tol_v = 4 * math.sqrt(v / n), 4 * v * math.sqrt(2 / n)
        assert abs(float(x.mean()) - m) < tol_m, (steps, float(x.mean()), m)
        assert abs(float(x.var()) - v) < tol_v, (steps, float(x.var()), v)


def _random_model(seed=0):
    torch.manual_seed(seed)
    return FlowAndScore(MLP(2, hidden=16), MLP(2, hidden=16))


def test_same_generator_same_samples_and_chunking_changes_nothing():
    model = _random_model()
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))

    def run(seed, **kw):
        return sample_sde(model, x0, sigma=0.8, steps=12, generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a.x, b.x)
    assert not torch.allclose(a.x, c.x)
    chunked = run(3, chunk_size=7, return_trajectory=True)
    torch.testing.assert_close(chunked.x, a.x, rtol=1e-6, atol=1e-6)
    assert chunked.trajectory.shape == (13, 50, 2)
    torch.testing.assert_close(chunked.trajectory[-1], chunked.x)
    assert torch.equal(chunked.trajectory[0], x0)
    torch.testing.assert_close(chunked.times, torch.linspace(0, 1, 13))
    assert a.nfe == 2 * 12 - 1


def test_sigma_zero_is_the_euler_ode_and_needs_no_score():
    model = _random_model()
    x0 = torch.randn(30, 2, generator=torch.Generator().manual_seed(1))
    ode = sample(model, x0, solver="euler", steps=20)
    for m in (model, model.flow):  # the plain velocity MLP has no score: fine at sigma = 0
        sde = sample_sde(m, x0, sigma=0.0, steps=20)
        assert torch.equal(sde.x, ode.x) and sde.nfe == 20
    with pytest.raises(TypeError, match="needs a model with a score method"):
        sample_sde(model.flow, x0, sigma=0.5, steps=20)


S0 = [[1.0, 0.3], [0.3, 0.5]]
S1 = [[0.6, -0.2], [-0.2, 1.2]]


def _moments(x):
    x = x.double()
    return x.mean(0), torch.cov(x.T)


def test_sde_with_exact_fields_reproduces_the_closed_form_bridge_forward_and_backward():
    """With the closed-form velocity and score (flowmatch.trajectory.gaussian_bridge), the SDE's marginals at
    t = 0.25, 0.5, 0.75, 1 are those of the Schrödinger bridge (Bunne et al. 2023): this checks the
    drift v + (sigma^2/2) s and the noise sigma sqrt(h). Run backwards from N(m1, S1) at t = 1 it
    reaches N(m0, S0) (drift v - (sigma^2/2) s). 20 000 samples, 100 steps. Tolerance 0.05 on every
    mean and covariance entry (about 5 Monte Carlo standard errors of a covariance entry; the
    O(h) bias is below 0.01); measured: SDE_ORACLE_ERRORS (printed with -s), at most 0.014. A drift
    v + sigma^2 s misses by 0.25-0.56."""
    gb = GaussianBridge([0.0, 0.0], S0, [2.0, -1.0], S1, sigma=1.0)
    model = gb.as_model()
    n, steps = 20_000, 100
    g = torch.Generator().manual_seed(0)
    x0 = gb.m0 + torch.randn(n, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(gb.S0).T
    fwd = sample_sde(model, x0, sigma=1.0, steps=steps, generator=g, return_trajectory=True)
    x1 = gb.m1 + torch.randn(n, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(gb.S1).T
    back = sample_sde(model, x1, sigma=1.0, steps=steps, generator=g, t_span=(1.0, 0.0), return_trajectory=True)
    errors = {}
    for name, traj, k, t in [
        ("fwd", fwd, 25, 0.25),
        ("fwd", fwd, 50, 0.5),
        ("fwd", fwd, 75, 0.75),
        ("fwd", fwd, 100, 1.0),
        ("back", back, 50, 0.5),
        ("back", back, 100, 0.0),
    ]:
        mean, cov = _moments(traj.trajectory[k])
        errors[(name, t)] = (
            round(float((mean - gb.mean(t)).abs().max()), 4),
            round(float((cov - gb.cov(t)).abs().max()), 4),
        )
    print("SDE_ORACLE_ERRORS", errors)
    assert all(e_mean < 0.05 and e_cov < 0.05 for e_mean, e_cov in errors.values()), errors


class Probe(nn.Module):
    """Records the times at which velocity and score are evaluated."""

    def __init__(self):
        super().__init__()
        self.v_times: list[float] = []
        self.s_times: list[float] = []

    def forward(self, x, t, cond=None):
        self.v_times.append(float(t[0]))
        return torch.zeros_like(x)

    def score(self, x, t, cond=None):
        self.s_times.append(float(t[0]))
        return torch.zeros_like(x)


@pytest.mark.parametrize("t_span", [(0.0, 1.0), (1.0, 0.0)])
def test_endpoint_the_score_is_never_evaluated_at_the_end_time(t_span):
    steps = 10
    grid = np.linspace(t_span[0], t_span[1], steps + 1)
    x0 = torch.zeros(3, 2)
    p = Probe()
    res = sample_sde(p, x0, sigma=1.0, steps=steps, t_span=t_span)
    np.testing.assert_allclose(p.v_times, grid[:-1], atol=1e-7)  # left ends (Ito), never t_span[1]
    np.testing.assert_allclose(p.s_times, grid[:-2], atol=1e-7)  # no score in the last (ODE) step
    assert res.nfe == 2 * steps - 1
    p = Probe()
    res = sample_sde(p, x0, sigma=1.0, steps=steps, t_span=t_span, last_step="sde")
    np.testing.assert_allclose(p.s_times, grid[:-1], atol=1e-7)
    assert res.nfe == 2 * steps


def test_endpoint_deterministic_last_step_keeps_a_sharp_target_sharp():
    """N(0, I) -> N(m1, 1e-4 I) with the exact fields, sigma = 1, 100 steps: a stochastic last step
    ends with the fresh noise sigma sqrt(h) = 0.1 that no later step can remove (measured 0.100);
    the deterministic probability-flow last step (default) ends at 0.065 (target spread 0.01)."""
    gb = GaussianBridge([0.0, 0.0], np.eye(2), [3.0, 0.0], 1e-4 * np.eye(2), sigma=1.0)
    x0 = torch.randn(5_000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    spread = {}
    for last in ("ode", "sde"):
        res = sample_sde(
            gb.as_model(), x0, sigma=1.0, steps=100, last_step=last, generator=torch.Generator().manual_seed(1)
        )
        spread[last] = float(res.x.std(0).mean())
        assert float((res.x.mean(0) - gb.m1).abs().max()) < 0.01
    assert abs(spread["sde"] - 0.1) < 0.01, spread
    assert spread["ode"] < 0.75 * spread["sde"], spread


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        (dict(steps=0), ValueError, "steps must be a positive integer, got 0"),
        (dict(sigma=-1.0), ValueError, "sigma must be a finite number >= 0, got -1.0"),
        (dict(last_step="tweedie"), ValueError, "unknown last_step 'tweedie'; choose one of: ode, sde"),
        (dict(t_span=(0.5, 0.5)), ValueError, "t_span must hold two distinct times"),
        (dict(chunk_size=0), ValueError, "chunk_size must be a positive integer, got 0"),
        (dict(noise=torch.zeros(3, 4, 2)), ValueError, "noise must have shape (steps, n, *dims) = (5, 4, 2)"),
        (dict(generator=0), TypeError, "generator must be a torch.Generator or None, got int"),
        (dict(x0=torch.full((4, 2), float("nan"))), ValueError, "x0 must be finite"),
    ],
)
def test_bad_input_is_rejected_with_the_rule_and_the_value(kwargs, exc, msg):
    args = dict(sigma=1.0, steps=5, x0=torch.zeros(4, 2))
    args.update(kwargs)
    x0 = args.pop("x0")
    with pytest.raises(exc) as e:
        sample_sde(_random_model(), x0, **args)
    assert msg in str(e.value)
