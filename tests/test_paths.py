"""Each conditional path: u_t is the time derivative of x_t, endpoints, closed forms."""

import pytest
import torch

from flowmatch.paths import BrownianBridgePath, GaussianToDataPath, LinearPath, VPTrigPath

PATHS = [
    LinearPath(0.0),
    LinearPath(0.3),
    GaussianToDataPath(0.1),
    GaussianToDataPath(0.0),
    BrownianBridgePath(0.7),
    VPTrigPath(0.2),
]


def _batch(shape=(6, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    x1 = torch.randn(shape, generator=g, dtype=torch.float64) + 2.0
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    lo, hi = 0.01, 0.99
    t = lo + (hi - lo) * torch.rand(shape[0], generator=g, dtype=torch.float64)
    return x0, x1, eps, t


@pytest.mark.parametrize("path", PATHS, ids=repr)
@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 3, 3)])
def test_u_t_is_time_derivative_of_x_t(path, shape):
    x0, x1, eps, t = _batch(shape)
    # d/dt x_t at fixed (x0, x1, eps), per sample, by forward-mode autodiff.
    _, dxdt = torch.func.jvp(lambda tt: path.x_t(x0, x1, tt, eps), (t,), (torch.ones_like(t),))
    torch.testing.assert_close(path.u_t(x0, x1, t, eps), dxdt, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", [p for p in PATHS if p.is_stochastic], ids=repr)
def test_u_t_matches_design_formula(path):
    """u_t = dmu/dt + (dsigma/dt / sigma_t)(x_t - mu_t) wherever sigma_t > 0 (Tong et al. eq. 15)."""
    x0, x1, eps, t = _batch()
    sig = path.sigma_t(t)
    assert bool((sig > 0).all())
    xt = path.x_t(x0, x1, t, eps)
    mu = path.mu_t(x0, x1, t)
    ref = path.dmu_t(x0, x1, t) + (path.dsigma_t(t) / sig)[:, None] * (xt - mu)
    torch.testing.assert_close(path.u_t(x0, x1, t, eps), ref)


@pytest.mark.parametrize("path", [LinearPath(0.0), VPTrigPath(0.0), BrownianBridgePath(0.0, t_eps=0.0)], ids=repr)
def test_deterministic_endpoints(path):
    x0, x1, eps, _ = _batch()
    zero, one = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    torch.testing.assert_close(path.x_t(x0, x1, zero, eps), x0)
    torch.testing.assert_close(path.x_t(x0, x1, one, eps), x1)


def test_fm_path_closed_form():
    """Lipman's FM: x_0 = x0 ~ N(0,I), x_1 = x1 + sigma_min x0; u_t equals Lipman's eq. (21)."""
    smin = 0.1
    p = GaussianToDataPath(smin)
    x0, x1, eps, t = _batch()
    zero, one = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    torch.testing.assert_close(p.x_t(x0, x1, zero, eps), x0)
    torch.testing.assert_close(p.x_t(x0, x1, one, eps), x1 + smin * x0)
    xt = p.x_t(x0, x1, t, eps)
    lipman = (x1 - (1 - smin) * xt) / (1 - (1 - smin) * t[:, None])
    torch.testing.assert_close(p.u_t(x0, x1, t, eps), lipman)


def test_brownian_bridge_variance_and_range():
    p = BrownianBridgePath(sigma=2.0, t_eps=1e-3)
    t = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    torch.testing.assert_close(p.sigma_t(t), 2.0 * torch.sqrt(t * (1 - t)))
    assert p.t_range == (1e-3, 1 - 1e-3)
    # The empirical variance of x_t around mu_t is sigma^2 t (1 - t).
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0 = torch.zeros(n, 1, dtype=torch.float64)
    x1 = torch.ones(n, 1, dtype=torch.float64)
    tt = torch.full((n,), 0.3, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=g, dtype=torch.float64)
    xt = p.x_t(x0, x1, tt, eps)
    assert abs(float(xt.mean()) - 0.3) < 0.01
    assert abs(float(xt.var()) - 4 * 0.3 * 0.7) < 0.02


def test_vp_path_preserves_variance_of_independent_unit_endpoints():
    p = VPTrigPath(0.0)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(100_000, 1, generator=g)
    x1 = torch.randn(100_000, 1, generator=g)
    for tv in (0.2, 0.5, 0.8):
        xt = p.x_t(x0, x1, torch.full((100_000,), tv), torch.zeros_like(x0))
        assert abs(float(xt.var()) - 1.0) < 0.02  # cos^2 + sin^2 = 1


@pytest.mark.parametrize(
    "make, msg",
    [
        (lambda: LinearPath(-0.1), "sigma must be a finite number >= 0, got -0.1"),
        (lambda: LinearPath(float("nan")), "sigma"),
        (lambda: GaussianToDataPath(1.5), "sigma_min must be a number in [0, 1], got 1.5"),
        (lambda: BrownianBridgePath(1.0, t_eps=0.0), "t_eps must be > 0"),
        (lambda: BrownianBridgePath(1.0, t_eps=0.6), "t_eps must lie in [0, 0.5), got 0.6"),
    ],
)
def test_bad_parameters(make, msg):
    with pytest.raises(ValueError) as e:
        make()
    assert msg in str(e.value)
