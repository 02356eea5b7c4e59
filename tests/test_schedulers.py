"""Schedulers, affine paths and the conversions between parametrisations (issue 18, items 1-2)."""

from __future__ import annotations

import math

import pytest
import torch

from flowmatch.paths import (
    PARAMETRIZATIONS,
    AffinePath,
    CallableScheduler,
    CondOTScheduler,
    CosineScheduler,
    GaussianToDataPath,
    LinearPath,
    LinearVPScheduler,
    PolynomialScheduler,
    Scheduler,
    VPScheduler,
    VPTrigPath,
    convert,
    parse_scheduler,
    to_velocity,
    to_x1_eps,
)
from flowmatch.paths.conversions import check_regular, drift_and_diffusion

SCHEDULERS = [
    CondOTScheduler(),
    CondOTScheduler(0.05),
    PolynomialScheduler(2.0),
    PolynomialScheduler(0.5),
    VPScheduler(),
    VPScheduler(0.5, 5.0),
    LinearVPScheduler(),
    CosineScheduler(),
    CallableScheduler(lambda t: torch.sin(0.5 * math.pi * t) ** 2, lambda t: torch.cos(0.5 * math.pi * t)),
]


def _t(n: int = 64) -> torch.Tensor:
    return torch.linspace(0.02, 0.98, n, dtype=torch.float64)


@pytest.mark.parametrize("s", SCHEDULERS, ids=repr)
def test_derivatives_are_autograd_derivatives(s: Scheduler) -> None:
    t = _t().requires_grad_(True)
    out = s(t)
    (da,) = torch.autograd.grad(out.alpha.sum(), t, retain_graph=True)
    (ds,) = torch.autograd.grad(out.sigma.sum(), t)
    torch.testing.assert_close(out.d_alpha.detach(), da, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.d_sigma.detach(), ds, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("s", SCHEDULERS, ids=repr)
def test_path_velocity_is_the_time_derivative_of_x_t(s: Scheduler) -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1, eps = (torch.randn(64, 3, generator=g, dtype=torch.float64) for _ in range(3))
    path = AffinePath(s, sigma=0.3)
    t = _t().requires_grad_(True)
    x = path.x_t(x0, x1, t, eps)
    # d x_t[:, j] / dt, one column at a time (x_t[i] depends on t[i] only)
    dx = torch.stack([torch.autograd.grad(x[:, j].sum(), t, retain_graph=True)[0] for j in range(3)], dim=1)
    torch.testing.assert_close(path.u_t(x0, x1, t, eps).detach(), dx, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("s", SCHEDULERS, ids=repr)
def test_snr_inverse_inverts_the_snr(s: Scheduler) -> None:
    t = _t()
    torch.testing.assert_close(s.snr_inverse(s.snr(t)), t, rtol=0, atol=1e-9)
    # the generic bisection agrees with the closed forms
    torch.testing.assert_close(Scheduler.snr_inverse(s, s.snr(t)), t, rtol=0, atol=1e-9)


def test_endpoints_of_the_schedulers() -> None:
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for s in [CondOTScheduler(), PolynomialScheduler(3.0), LinearVPScheduler(), CosineScheduler()]:
        out = s(ends)
        torch.testing.assert_close(out.alpha, torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-15, rtol=0)
        torch.testing.assert_close(out.sigma, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-15, rtol=0)
    vp = VPScheduler(0.1, 20.0)(ends)
    assert float(vp.alpha[1]) == 1.0 and float(vp.sigma[1]) == 0.0
    assert float(vp.alpha[0]) == pytest.approx(math.exp(-(20.0 + 0.1) / 4))
    assert float(CondOTScheduler(0.1)(ends).sigma[1]) == pytest.approx(0.1)


def test_named_paths_are_affine_instances_with_the_old_formulas() -> None:
    g = torch.Generator().manual_seed(1)
    x0, x1, eps = (torch.randn(32, 4, generator=g) for _ in range(3))
    t = torch.rand(32, generator=g)
    tt = t[:, None]
    cases = [
        (LinearPath(0.1), tt * x1 + (1 - tt) * x0, x1 - x0, CondOTScheduler()),
        (GaussianToDataPath(0.1), tt * x1 + (1 - 0.9 * tt) * x0, x1 - 0.9 * x0, CondOTScheduler(0.1)),
        (
            VPTrigPath(0.1),
            torch.cos(math.pi * tt / 2) * x0 + torch.sin(math.pi * tt / 2) * x1,
            math.pi / 2 * (torch.cos(math.pi * tt / 2) * x1 - torch.sin(math.pi * tt / 2) * x0),
            CosineScheduler(),
        ),
    ]
    for path, mu, dmu, sched in cases:
        assert isinstance(path, AffinePath)
        torch.testing.assert_close(path.mu_t(x0, x1, t), mu)
        torch.testing.assert_close(path.dmu_t(x0, x1, t), dmu)
        generic = AffinePath(sched, path.sigma)  # the scheduler's own formulas, without overrides
        torch.testing.assert_close(generic.x_t(x0, x1, t, eps), path.x_t(x0, x1, t, eps))
        torch.testing.assert_close(generic.u_t(x0, x1, t, eps), path.u_t(x0, x1, t, eps))
    assert not GaussianToDataPath(0.1).is_stochastic and GaussianToDataPath(0.1).is_gaussian
    assert LinearPath(0.1).is_stochastic and not LinearPath(0.1).is_gaussian


def _field_pair(s: Scheduler):
    g = torch.Generator().manual_seed(2)
    x1, eps = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = _t()
    out = s(t)
    a, sg, da, ds = (v[:, None] for v in (out.alpha, out.sigma, out.d_alpha, out.d_sigma))
    x = a * x1 + sg * eps
    preds = {"velocity": da * x1 + ds * eps, "x1": x1, "eps": eps, "score": -eps / sg}
    return x, t, preds


@pytest.mark.parametrize("s", SCHEDULERS, ids=repr)
def test_every_conversion_of_a_conditional_field_is_exact(s: Scheduler) -> None:
    x, t, preds = _field_pair(s)
    for src in PARAMETRIZATIONS:
        for dst in PARAMETRIZATIONS:
            torch.testing.assert_close(convert(preds[src], src, dst, x, t, s), preds[dst], rtol=1e-9, atol=1e-9)
        x1, eps = to_x1_eps(preds[src], src, x, t, s)
        torch.testing.assert_close(x1, preds["x1"], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(eps, preds["eps"], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(to_velocity(preds[src], src, x, t, s), preds["velocity"], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("s", SCHEDULERS, ids=repr)
def test_round_trips_of_arbitrary_predictions_to_1e_6(s: Scheduler) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 2, generator=g, dtype=torch.float64)
    pred, t = torch.randn(64, 2, generator=g, dtype=torch.float64), _t()
    for a, b in [("velocity", "eps"), ("x1", "score"), ("velocity", "x1"), ("eps", "score"), ("velocity", "score")]:
        back = convert(convert(pred, a, b, x, t, s), b, a, x, t, s)
        torch.testing.assert_close(back, pred, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("s", SCHEDULERS, ids=repr)
def test_probability_flow_drift_is_f_plus_half_g2_score(s: Scheduler) -> None:
    x, t, preds = _field_pair(s)
    f, g2 = drift_and_diffusion(s, t, x)
    torch.testing.assert_close(f + 0.5 * g2 * preds["score"], preds["velocity"], rtol=1e-9, atol=1e-9)
    assert bool((g2 > 0).all())


def test_singular_conversions_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="eps parametrisation .* singular at t = 0.0"):
        check_regular(CondOTScheduler(), "eps", 0.0)
    with pytest.raises(ValueError, match="score parametrisation .* singular"):
        check_regular(CosineScheduler(), "score", 0.0)
    check_regular(CondOTScheduler(), "score", 1.0)
    check_regular(CondOTScheduler(), "x1", 1.0)  # the limit alpha' x1 (E[eps | x1] = 0)
    with pytest.raises(ValueError, match="singular"):
        check_regular(PolynomialScheduler(2.0), "velocity", 0.0)
    check_regular(CondOTScheduler(), "x1", 0.0)
    check_regular(CondOTScheduler(), "velocity", 0.0)
    with pytest.raises(ValueError, match="unknown parametrisation 'noise'"):
        convert(torch.zeros(1, 1), "noise", "x1", torch.zeros(1, 1), torch.zeros(1), CondOTScheduler())


def test_parse_scheduler_and_its_errors() -> None:
    assert repr(parse_scheduler("condot:0.01")) == "CondOTScheduler(sigma_min=0.01)"
    assert repr(parse_scheduler("polynomial:3")) == "PolynomialScheduler(n=3.0)"
    assert repr(parse_scheduler("vp:0.1,20")) == "VPScheduler(beta_min=0.1, beta_max=20.0)"
    assert isinstance(parse_scheduler("cosine"), CosineScheduler)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        parse_scheduler("sigmoid")
    with pytest.raises(ValueError, match="must be written vp"):
        parse_scheduler("vp:a,b")
    with pytest.raises(ValueError, match="beta_max > beta_min"):
        parse_scheduler("vp:20,0.1")
    with pytest.raises(ValueError, match="sigma_min must lie in"):
        CondOTScheduler(1.0)


def test_callable_scheduler_derivatives_under_no_grad_and_given() -> None:
    s = CallableScheduler(lambda t: t**3, lambda t: 1 - t**3)
    t = _t()
    with torch.no_grad():
        out = s(t)
    torch.testing.assert_close(out.d_alpha, 3 * t**2)
    given = CallableScheduler(lambda t: t, lambda t: 1 - t, lambda t: torch.ones_like(t), lambda t: -torch.ones_like(t))
    torch.testing.assert_close(given(t).d_sigma, -torch.ones_like(t))
    with pytest.raises(ValueError, match="elementwise"):
        CallableScheduler(lambda t: t.sum(), lambda t: 1 - t)(t)


flow_matching = pytest.importorskip("flow_matching", reason="Meta's flow-matching package is not installed")


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (CondOTScheduler(), "CondOTScheduler()"),
        (PolynomialScheduler(2.0), "PolynomialConvexScheduler(n=2.0)"),
        (VPScheduler(0.1, 20.0), "VPScheduler(beta_min=0.1, beta_max=20.0)"),
        (LinearVPScheduler(), "LinearVPScheduler()"),
        (CosineScheduler(), "CosineScheduler()"),
    ],
    ids=lambda v: repr(v),
)
def test_x_t_and_dx_t_equal_metas_affine_prob_path(ours: Scheduler, theirs: str) -> None:
    from flow_matching.path import AffineProbPath
    from flow_matching.path import scheduler as meta_scheduler

    meta = AffineProbPath(scheduler=eval(theirs, vars(meta_scheduler)))
    g = torch.Generator().manual_seed(4)
    x0, x1 = (
        torch.randn(128, 5, generator=g, dtype=torch.float64),
        torch.randn(128, 5, generator=g, dtype=torch.float64),
    )
    t = torch.rand(128, generator=g, dtype=torch.float64) * 0.98 + 0.01
    ps = meta.sample(x_0=x0, x_1=x1, t=t)
    path = AffinePath(ours)
    zero = torch.zeros_like(x0)
    torch.testing.assert_close(path.x_t(x0, x1, t, zero), ps.x_t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(path.u_t(x0, x1, t, zero), ps.dx_t, rtol=1e-12, atol=1e-12)
    # and the conversions agree with Meta's AffineProbPath.velocity_to_epsilon / target_to_velocity
    v = torch.randn(128, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        convert(v, "velocity", "eps", ps.x_t, t, ours), meta.velocity_to_epsilon(v, ps.x_t, t[:, None])
    )
    torch.testing.assert_close(
        convert(v, "x1", "velocity", ps.x_t, t, ours), meta.target_to_velocity(v, ps.x_t, t[:, None])
    )
