"""sample_diffusion: DDIM / DDPM steps and Euler-Maruyama of the churn SDEs of affine paths.

Gaussian data x1 ~ N(m, diag(s^2)) makes every field exact: on x_t = alpha x1 + sigma eps the
marginal is N(alpha m, alpha^2 s^2 + sigma^2) and the posterior mean is
E[x1 | x_t] = m + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha m) per coordinate, written
below as a model in each parametrisation (not through flowmatch.paths.conversions). Every churn
must then end at N(m, diag(s^2)), within Monte-Carlo error of 20000 samples.
"""

from __future__ import annotations

import math

import pytest
import torch

import flowmatch
from flowmatch.paths.schedulers import CondOTScheduler, CosineScheduler, VPScheduler
from flowmatch.sampling.diffusion import ddim_noise_scale, sample_diffusion

DT = torch.float64
M = torch.tensor([1.5, -0.5], dtype=DT)
S = torch.tensor([0.3, 1.2], dtype=DT)
N = 20000
PARAMS = ("velocity", "x1", "eps", "score")
SCHEDULERS = {"condot": CondOTScheduler(), "vp": VPScheduler(), "cosine": CosineScheduler()}
CHURNS = (0.0, 0.5, 1.0, 2.0)


def gaussian_model(scheduler, param, m=M, s=S, calls=None):
    """The exact field of data N(m, diag(s^2)) on scheduler's path, predicting ``param``."""

    def model(x, t, cond=None, mask=None):
        if calls is not None:
            calls.append(float(t.max()))
        out = scheduler(t)
        shape = (-1,) + (1,) * (x.dim() - 1)
        a, sg, da, dsg = (v.reshape(shape) for v in (out.alpha, out.sigma, out.d_alpha, out.d_sigma))
        var = a * a * s**2 + sg * sg
        x1 = m + a * s**2 / var * (x - a * m)  # E[x1 | x_t]
        if param == "x1":
            return x1
        if param == "score":
            return -(x - a * m) / var  # grad log N(x; a m, var)
        eps = (x - a * x1) / sg  # E[eps | x_t]
        if param == "eps":
            return eps
        return da * x1 + dsg * eps  # E[alpha' x1 + sigma' eps | x_t]

    return model


def marginal(scheduler, t0, n=N, seed=0):
    """n draws of the path's marginal at t0, N(alpha m, alpha^2 s^2 + sigma^2)."""
    out = scheduler(torch.tensor(t0, dtype=DT))
    a, sg = float(out.alpha), float(out.sigma)
    g = torch.Generator().manual_seed(seed)
    return a * M + torch.sqrt(a * a * S**2 + sg * sg) * torch.randn(n, 2, generator=g, dtype=DT), g


def law_errors(x, m=M, s=S):
    """Largest |error| of the sample mean and covariance in standard errors: mean s / sqrt(n);
    sample covariance sqrt((S_ii S_jj + S_ij^2) / (n - 1)) for Gaussian data."""
    n = x.shape[0]
    mean_z = ((x.mean(0) - m) / (s / math.sqrt(n))).abs().max()
    cov = torch.diag(s**2)
    se = torch.sqrt((cov.diag()[:, None] * cov.diag()[None, :] + cov**2) / (n - 1))
    cov_z = ((torch.cov(x.T) - cov) / se).abs().max()
    return float(mean_z), float(cov_z)


def start_time(solver, name, param):
    """t0 = 0 where the start is regular (EM with churn needs alpha_t0 > 0: t0 = 1e-3 always)."""
    if solver == "euler-maruyama":
        return 1e-3
    return 0.0 if (param in ("velocity", "x1") or name == "vp") else 1e-3


@pytest.mark.parametrize("churn", CHURNS)
@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("solver", ["ddim", "euler-maruyama"])
def test_every_churn_ends_at_the_data_law(solver, name, churn):
    """Mean and covariance of the endpoints within 5 standard errors of N(m, diag(s^2)). The
    parametrisation rotates so that each one meets every scheduler and every churn (all four give
    the same samples: the next test). DDIM's bias is O(h) with a constant growing with churn:
    VP at churn 2 is 10 standard errors off with 1000 steps, hence 4000 there."""
    scheduler = SCHEDULERS[name]
    param = PARAMS[(list(SCHEDULERS).index(name) + CHURNS.index(churn)) % 4]
    t0 = start_time(solver, name, param)
    x0, g = marginal(scheduler, t0)
    steps = 4000 if (solver, name, churn) == ("ddim", "vp", 2.0) else 1000
    out = sample_diffusion(
        gaussian_model(scheduler, param), x0, scheduler, param=param, churn=churn, solver=solver,
        steps=steps, t_span=(t0, 1.0), generator=g,
    )  # fmt: skip
    mean_z, cov_z = law_errors(out.x)
    assert mean_z < 5 and cov_z < 5, (param, mean_z, cov_z)
    assert out.nfe == steps


@pytest.mark.parametrize("churn", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("solver", ["ddim", "euler-maruyama"])
def test_the_four_parametrisations_give_the_same_samples(solver, name, churn):
    scheduler = SCHEDULERS[name]
    x0, _ = marginal(scheduler, 1e-3, n=500)
    outs = []
    for param in PARAMS:
        g = torch.Generator().manual_seed(3)
        out = sample_diffusion(
            gaussian_model(scheduler, param), x0, scheduler, param=param, churn=churn, solver=solver,
            steps=50, t_span=(1e-3, 1.0), generator=g,
        )  # fmt: skip
        outs.append(out.x)
    for param, x in zip(PARAMS[1:], outs[1:]):
        torch.testing.assert_close(x, outs[0], rtol=1e-8, atol=1e-8, msg=param)


def test_the_law_check_detects_a_wrong_field():
    """The tolerance of the law test is tight enough to see a 0.1 s shift of the mean and a 5%
    error of the scale."""
    scheduler = CondOTScheduler()
    x0, g = marginal(scheduler, 0.0)
    shifted = sample_diffusion(gaussian_model(scheduler, "x1", m=M + 0.1 * S), x0, scheduler, param="x1", steps=200)
    assert law_errors(shifted.x)[0] > 5
    wide = sample_diffusion(gaussian_model(scheduler, "x1", s=1.05 * S), x0, scheduler, param="x1", steps=200)
    assert law_errors(wide.x)[1] > 5


def test_churn_changes_the_trajectory_but_not_the_law():
    scheduler = CondOTScheduler()
    x0, _ = marginal(scheduler, 0.0)
    ends = {}
    for churn in (0.0, 1.0):
        g = torch.Generator().manual_seed(5)
        ends[churn] = sample_diffusion(
            gaussian_model(scheduler, "velocity"), x0, scheduler, churn=churn, steps=1000, generator=g
        ).x
        mean_z, cov_z = law_errors(ends[churn])
        assert mean_z < 5 and cov_z < 5, (churn, mean_z, cov_z)
    # the same starts end elsewhere: per coordinate a typical move of a sizeable part of s
    moved = (ends[1.0] - ends[0.0]).abs().median(dim=0).values
    assert bool((moved > 0.2 * S).all()), moved


def ddpm_reference(scheduler, t, t_next, x, eps_hat, z, churn):
    """One step in DDPM's notation (Ho et al. 2020, eq. 6-7; Song et al. 2021, eq. 12): abar = alpha^2."""
    abar = float(scheduler(torch.tensor(t, dtype=DT)).alpha) ** 2
    abar_prev = float(scheduler(torch.tensor(t_next, dtype=DT)).alpha) ** 2
    x0_hat = (x - math.sqrt(1 - abar) * eps_hat) / math.sqrt(abar)
    if churn == 0:
        return math.sqrt(abar_prev) * x0_hat + math.sqrt(1 - abar_prev) * eps_hat
    beta = 1 - abar / abar_prev
    alpha_t = 1 - beta
    mean = math.sqrt(abar_prev) * beta / (1 - abar) * x0_hat + math.sqrt(alpha_t) * (1 - abar_prev) / (1 - abar) * x
    return mean + math.sqrt((1 - abar_prev) / (1 - abar) * beta) * z


@pytest.mark.parametrize("churn", [0.0, 1.0])
@pytest.mark.parametrize("span", [(0.4, 0.45), (0.0, 0.1), (0.9, 0.99)])
def test_the_vp_ddim_step_is_ddpm_at_churn_1_and_ddim_at_churn_0(span, churn):
    scheduler = VPScheduler()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(64, 3, generator=g, dtype=DT)
    z = torch.randn(1, 64, 3, generator=g, dtype=DT)

    def eps_model(x, t, cond=None):  # any eps-prediction: the step is the same algebra
        return torch.tanh(x) * (1 + t[:, None]) - 0.3

    out = sample_diffusion(eps_model, x, scheduler, param="eps", churn=churn, steps=1, t_span=span, noise=z)
    t = torch.full((64,), span[0], dtype=DT)
    expected = ddpm_reference(scheduler, span[0], span[1], x, eps_model(x, t), z[0], churn)
    torch.testing.assert_close(out.x, expected, rtol=1e-12, atol=1e-12)


def test_the_noise_scale():
    # from t = 0 (alpha = 0) every churn >= 1 draws all of sigma' afresh; churn 0 none
    assert ddim_noise_scale(1.0, 0.0, 1.0, 0.1, 0.9) == pytest.approx(0.9)
    assert ddim_noise_scale(2.0, 0.0, 1.0, 0.1, 0.9) == pytest.approx(0.9)
    assert ddim_noise_scale(0.5, 0.0, 1.0, 0.1, 0.9) == pytest.approx(0.45)
    assert ddim_noise_scale(0.0, 0.3, 0.7, 0.4, 0.6) == 0.0
    assert ddim_noise_scale(1.0, 0.3, 0.7, 1.0, 0.0) == 0.0  # to the data: no noise
    # in between: (sigma'/sigma) sqrt(sigma^2 - (alpha/alpha')^2 sigma'^2)
    assert ddim_noise_scale(1.0, 0.3, 0.7, 0.4, 0.6) == pytest.approx(0.6 / 0.7 * math.sqrt(0.49 - 0.5625 * 0.36))


@pytest.mark.parametrize("solver", ["ddim", "euler-maruyama"])
def test_padding_stays_exactly_zero(solver):
    scheduler = CondOTScheduler()
    g = torch.Generator().manual_seed(11)
    x0 = torch.randn(4, 2, 6, generator=g, dtype=DT)  # padding not zero on entry
    lengths = torch.tensor([6, 4, 2, 5])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).to(DT)[:, None, :]
    seen = []

    def model(x, t, cond=None, mask=None):
        seen.append(mask)
        return 0.5 * x + 1.0  # non-zero in the padding unless the sampler masks it

    out = sample_diffusion(
        model, x0, scheduler, param="x1", churn=1.0, solver=solver, steps=20, t_span=(1e-2, 1.0),
        mask=mask, generator=g, return_trajectory=True,
    )  # fmt: skip
    traj = out.require_trajectory()
    pad = (mask == 0).expand_as(x0)
    assert bool((traj[:, pad] == 0).all())
    assert bool((traj[-1][~pad] != 0).all())
    assert all(torch.equal(m, mask) for m in seen)


def test_the_model_is_never_evaluated_at_the_end_time():
    scheduler = CosineScheduler()
    calls = []
    x0, g = marginal(scheduler, 0.0, n=10)
    out = sample_diffusion(gaussian_model(scheduler, "velocity", calls=calls), x0, scheduler, steps=25, generator=g)
    assert len(calls) == out.nfe == 25
    assert max(calls) == pytest.approx(24 / 25)
    assert out.times[0] == 0 and out.times[-1] == 1


def test_singular_starts_raise():
    x0 = torch.randn(8, 2, dtype=DT)
    for name in ("condot", "cosine"):
        for param in ("eps", "score"):
            with pytest.raises(ValueError, match="singular at t = 0.0"):
                sample_diffusion(gaussian_model(SCHEDULERS[name], param), x0, SCHEDULERS[name], param=param)
    condot = SCHEDULERS["condot"]
    with pytest.raises(ValueError, match="use solver='ddim' or start at t0 > 0"):
        sample_diffusion(gaussian_model(condot, "velocity"), x0, condot, solver="euler-maruyama")
    # without churn, Euler-Maruyama is the probability-flow Euler step: regular at t = 0
    out = sample_diffusion(gaussian_model(condot, "velocity"), x0, condot, solver="euler-maruyama", churn=0.0)
    assert bool(torch.isfinite(out.x).all())
    # VP has alpha_0 > 0: eps-prediction starts at t = 0
    vp = SCHEDULERS["vp"]
    assert bool(torch.isfinite(sample_diffusion(gaussian_model(vp, "eps"), x0, vp, param="eps", steps=5).x).all())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t_span": (1.0, 0.0)}, "0 <= t0 < t1 <= 1"),
        ({"t_span": (0.5, 1.5)}, "0 <= t0 < t1 <= 1"),
        ({"t_span": (-0.1, 1.0)}, "0 <= t0 < t1 <= 1"),
        ({"churn": -1.0}, "churn"),
        ({"param": "v"}, "param"),
        ({"solver": "heun"}, "solver"),
        ({"steps": 0}, "steps"),
        ({"noise": torch.zeros(3, 8, 2)}, r"noise must have shape \(steps, n, \*dims\)"),
    ],
)
def test_bad_input_raises_one_line(kwargs, match):
    x0 = torch.randn(8, 2, dtype=DT)
    model = gaussian_model(CondOTScheduler(), "velocity")
    with pytest.raises(ValueError, match=match) as err:
        sample_diffusion(model, x0, CondOTScheduler(), **{"steps": 5, **kwargs})
    assert "\n" not in str(err.value)


def test_bad_types_raise():
    x0 = torch.randn(8, 2, dtype=DT)
    model = gaussian_model(CondOTScheduler(), "velocity")
    with pytest.raises(TypeError, match="Scheduler"):
        sample_diffusion(model, x0, "condot")
    with pytest.raises(TypeError, match="generator"):
        sample_diffusion(model, x0, CondOTScheduler(), generator=0)


@pytest.mark.parametrize("solver", ["ddim", "euler-maruyama"])
def test_the_same_generator_gives_the_same_samples(solver):
    scheduler = VPScheduler()
    x0, _ = marginal(scheduler, 1e-3, n=100)
    model = gaussian_model(scheduler, "eps")

    def run(seed=None, noise=None):
        g = None if seed is None else torch.Generator().manual_seed(seed)
        kw = dict(param="eps", solver=solver, steps=30, t_span=(1e-3, 1.0), generator=g, noise=noise)
        return sample_diffusion(model, x0, scheduler, **kw).x

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))
    # one draw of x0's shape per step, in step order: the same draws passed as `noise` agree
    g = torch.Generator().manual_seed(1)
    noise = torch.stack([torch.randn(x0.shape, generator=g, dtype=DT) for _ in range(30)])
    assert torch.equal(run(noise=noise), run(1))


def test_churn_zero_is_deterministic_and_the_package_exports_it():
    scheduler = CondOTScheduler()
    x0, _ = marginal(scheduler, 0.0, n=50)
    model = gaussian_model(scheduler, "velocity")
    a = flowmatch.sample_diffusion(model, x0, scheduler, churn=0.0, generator=torch.Generator().manual_seed(1))
    b = flowmatch.sampling.sample_diffusion(model, x0, scheduler, churn=0.0)
    assert torch.equal(a.x, b.x)
