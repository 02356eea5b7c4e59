"""Manifolds (issue 21): exp/log round trips, geodesic endpoints and distances, the geodesic path's
velocity against autograd through exp, the Riemannian CFM loss, and OT on the squared geodesic
cost against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from flowmatch.couplings.geodesic import GeodesicOT
from flowmatch.manifolds import Euclidean, FlatTorus, Product, Sphere, check_points, get_manifold, wrap
from flowmatch.objectives.riemannian import RiemannianFlowMatcher, riemannian_method
from flowmatch.paths.geodesic import GeodesicPath


@pytest.fixture(autouse=True)
def _float64():
    """Closed forms to 1e-10: every test of this module runs in float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _points(m, n, seed):
    g = torch.Generator().manual_seed(seed)
    if isinstance(m, Euclidean):
        return torch.randn(n, m.ambient_dim, generator=g)
    if isinstance(m, Product):
        parts = [_points(f, n, seed + i) for i, f in enumerate(m.factors)]
        return torch.cat(parts, -1)
    return m.random_uniform(n, generator=g)


MANIFOLDS = [Sphere(2), Sphere(4), FlatTorus(2), FlatTorus(3), Euclidean(3), Product(Sphere(2), FlatTorus(1))]
IDS = [repr(m) for m in MANIFOLDS]


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_exp_of_log_returns_the_point_and_log_has_the_geodesic_length(m):
    x, y = _points(m, 200, 0), _points(m, 200, 1)
    v = m.log(x, y)
    assert torch.allclose(m.proj_tangent(x, v), v, atol=1e-12)  # log is tangent at x
    back = m.exp(x, v)
    assert float(m.dist(back, y).max()) < 1e-9
    assert torch.allclose(torch.linalg.vector_norm(v, dim=-1), m.dist(x, y), atol=1e-10)
    # log of exp for tangent vectors shorter than the injectivity radius (pi on S^d and T^d)
    u = m.proj_tangent(x, torch.randn(x.shape, generator=torch.Generator().manual_seed(2)))
    u = u * (0.9 * math.pi / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    if isinstance(m, FlatTorus):  # per-coordinate injectivity: |u_i| < pi
        u = u.clamp(-3.0, 3.0)
    if isinstance(m, Product):  # per factor
        u = torch.cat([u[:, :3] * 0.5, u[:, 3:].clamp(-3.0, 3.0)], -1)
    assert torch.allclose(m.log(x, m.exp(x, u)), u, atol=1e-9)
    assert float(m.distance_to_manifold(m.exp(x, u)).max()) < 1e-12


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_the_geodesic_ends_at_its_endpoints_with_constant_speed(m):
    x0, x1 = _points(m, 100, 3), _points(m, 100, 4)
    path = GeodesicPath(m)
    z = torch.zeros_like(x0)
    assert float(m.dist(path.x_t(x0, x1, torch.zeros(100), z), x0).max()) < 1e-12
    assert float(m.dist(path.x_t(x0, x1, torch.ones(100), z), x1).max()) < 1e-9
    t = torch.rand(100, generator=torch.Generator().manual_seed(5))
    xt = path.x_t(x0, x1, t, z)
    # the distance splits as t d and (1 - t) d along a minimising geodesic
    d = m.dist(x0, x1)
    assert torch.allclose(m.dist(x0, xt), t * d, atol=1e-9)
    assert torch.allclose(m.dist(xt, x1), (1 - t) * d, atol=1e-9)
    speed = m.norm(xt, path.u_t(x0, x1, t, z))
    assert torch.allclose(speed, d, atol=1e-9)


@pytest.mark.parametrize("m", MANIFOLDS, ids=IDS)
def test_u_t_is_the_time_derivative_of_x_t_by_autograd_through_exp(m):
    x0, x1 = _points(m, 50, 6), _points(m, 50, 7)
    t = (0.05 + 0.9 * torch.rand(50, generator=torch.Generator().manual_seed(8))).requires_grad_(True)
    path = GeodesicPath(m)
    v = m.log(x0, x1)
    xt = m.exp(x0, t[:, None] * v)  # differentiate exp itself, not the closed-form geodesic
    jac = torch.stack([torch.autograd.grad(xt[:, i].sum(), t, retain_graph=True)[0] for i in range(xt.shape[1])], dim=1)
    u = path.u_t(x0, x1, t.detach(), torch.zeros_like(x0))
    assert torch.allclose(jac, u, atol=1e-9)
    # and u_t = log_{x_t}(x1) / (1 - t): the remaining geodesic in the remaining time
    rem = m.log(xt.detach(), x1) / (1 - t.detach())[:, None]
    assert torch.allclose(rem, u, atol=1e-8)


def test_sphere_closed_forms():
    s = Sphere(2)
    e = torch.eye(3)
    assert torch.allclose(s.dist(e[:1], e[1:2]), torch.tensor([math.pi / 2]))
    assert torch.allclose(s.dist(e[:1], -e[:1]), torch.tensor([math.pi]))
    assert torch.allclose(s.exp(e[:1], math.pi * e[1:2]), -e[:1], atol=1e-12)
    assert math.isclose(s.log_volume(), math.log(4 * math.pi))
    assert math.isclose(Sphere(1).log_volume(), math.log(2 * math.pi))
    assert math.isclose(Sphere(3).log_volume(), math.log(2 * math.pi**2))
    x = s.random_uniform(20000, generator=torch.Generator().manual_seed(0))
    assert float(s.distance_to_manifold(x).max()) < 1e-12
    # uniform on S^2: the height z is uniform on [-1, 1] (Archimedes), mean 0, variance 1/3
    assert abs(float(x[:, 2].mean())) < 0.02 and abs(float(x[:, 2].var()) - 1 / 3) < 0.01


def test_torus_wraps_across_the_seam():
    t = FlatTorus(1)
    a, b = torch.tensor([[3.0]]), torch.tensor([[-3.0]])
    assert torch.allclose(t.log(a, b), torch.tensor([[2 * math.pi - 6.0]]))
    assert torch.allclose(t.exp(a, torch.tensor([[0.5]])), torch.tensor([[3.5 - 2 * math.pi]]))
    assert torch.allclose(
        wrap(torch.tensor([math.pi, -math.pi, 7.0])), torch.tensor([-math.pi, -math.pi, 7 - 2 * math.pi])
    )
    x = FlatTorus(2).random_uniform(1000, generator=torch.Generator().manual_seed(0))
    assert float(x.min()) >= -math.pi and float(x.max()) < math.pi
    assert math.isclose(FlatTorus(2).log_volume(), 2 * math.log(2 * math.pi))
    assert torch.allclose(FlatTorus(2).features(torch.zeros(1, 2)), torch.tensor([[1.0, 1.0, 0.0, 0.0]]))


def test_product_distance_and_volume_are_those_of_the_factors():
    m = Product(Sphere(2), FlatTorus(2))
    x, y = _points(m, 30, 0), _points(m, 30, 1)
    d2 = Sphere(2).dist(x[:, :3], y[:, :3]) ** 2 + FlatTorus(2).dist(x[:, 3:], y[:, 3:]) ** 2
    assert torch.allclose(m.dist(x, y) ** 2, d2)
    assert math.isclose(m.log_volume(), math.log(4 * math.pi) + 2 * math.log(2 * math.pi))
    assert m.dim == 4 and m.ambient_dim == 5 and m.feature_dim == 7


def test_bad_input_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        Sphere(0)
    with pytest.raises(ValueError, match="unknown manifold 'hyperbolic'"):
        get_manifold("hyperbolic")
    with pytest.raises(ValueError, match="must lie on Sphere"):
        check_points(Sphere(2), torch.tensor([[2.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        check_points(Sphere(2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="no uniform distribution"):
        Euclidean(2).random_uniform(3)
    with pytest.raises(ValueError, match="one or more Manifold factors"):
        Product()


@pytest.mark.parametrize("m", [Sphere(2), FlatTorus(2)], ids=["sphere", "torus"])
@pytest.mark.parametrize("n", [2, 5, 7])
def test_geodesic_ot_equals_the_brute_force_optimum(m, n):
    for seed in range(3):
        x0, x1 = _points(m, n, 10 * seed + n), _points(m, n, 10 * seed + n + 100)
        cost = (m.dist(x0[:, None], x1[None]) ** 2).numpy()
        brute = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
        pairing = GeodesicOT(m)(x0, x1)
        got = float(sum(cost[int(i), int(j)] for i, j in zip(pairing.i0, pairing.i1)))
        assert sorted(pairing.i1.tolist()) == list(range(n))
        assert got == pytest.approx(brute, abs=1e-9)


def test_geodesic_ot_uses_the_geodesic_not_the_chordal_cost():
    """On the circle, 3 and -3 are close across the seam: Euclidean OT on the angles pairs them
    the other way."""
    from flowmatch.couplings import ExactOT

    x0, x1 = torch.tensor([[3.0], [-1.0]]), torch.tensor([[-3.0], [0.5]])
    assert GeodesicOT(FlatTorus(1))(x0, x1).i1.tolist() == [0, 1]
    assert ExactOT()(x0, x1).i1.tolist() == [1, 0]
    with pytest.raises(ValueError, match="cannot pair padded sequences"):
        GeodesicOT(FlatTorus(1)).prepare(x0[None].expand(2, 2, 1), x1[None].expand(2, 2, 1), mask=torch.ones(2, 1, 1))


def test_the_riemannian_loss_is_zero_for_the_conditional_field_and_ignores_the_normal_part():
    s = Sphere(2)
    x0, x1 = _points(s, 64, 0), _points(s, 64, 1)
    fm = RiemannianFlowMatcher(s)
    g = torch.Generator().manual_seed(3)
    smp = fm.sample(x0, x1, generator=g)
    lookup = {tuple(a.tolist()): b for a, b in zip(smp.x_t, smp.u_t)}

    def oracle(x, t, cond=None):  # the conditional target, plus a normal component (x itself)
        return torch.stack([lookup[tuple(r.tolist())] for r in x]) + 5 * x

    assert float(fm.regression_loss(oracle, smp)) < 1e-20

    def zero(x, t, cond=None):
        return torch.zeros_like(x)

    # the loss of v = 0 is E ||u_t||^2 = E d(x0, x1)^2
    assert float(fm.regression_loss(zero, smp)) == pytest.approx(float((s.dist(x0, x1) ** 2).mean()), rel=1e-9)


def test_ot_pairs_shorten_the_geodesics():
    s = Sphere(2)
    x0, x1 = _points(s, 128, 0), _points(s, 128, 1)
    ind = riemannian_method("i-cfm", s).sample(x0, x1, generator=torch.Generator().manual_seed(0))
    ot = riemannian_method("ot-cfm", s).sample(x0, x1, generator=torch.Generator().manual_seed(0))
    e_ind, e_ot = float((s.dist(ind.x0, ind.x1) ** 2).mean()), float((s.dist(ot.x0, ot.x1) ** 2).mean())
    assert e_ot < 0.5 * e_ind
    with pytest.raises(ValueError, match="unknown method 'sb-cfm'"):
        riemannian_method("sb-cfm", s)


def test_the_geodesic_path_equals_meta_flow_matching_where_installed():
    """Our closed-form x_t and u_t against Meta's GeodesicProbPath (x_t by its geodesic, dx_t by a jvp)."""
    pytest.importorskip("flow_matching")
    from flow_matching.path import GeodesicProbPath
    from flow_matching.path.scheduler import CondOTScheduler
    from flow_matching.utils.manifolds import FlatTorus as MetaTorus
    from flow_matching.utils.manifolds import Sphere as MetaSphere

    t = torch.rand(40, generator=torch.Generator().manual_seed(9))
    for m, meta, to_meta in (
        (Sphere(2), MetaSphere(), lambda x: x),
        (FlatTorus(2), MetaTorus(), lambda x: torch.remainder(x, 2 * math.pi)),
    ):
        x0, x1 = _points(m, 40, 10), _points(m, 40, 11)
        theirs = GeodesicProbPath(CondOTScheduler(), meta).sample(x_0=to_meta(x0), x_1=to_meta(x1), t=t)
        ours = GeodesicPath(m)
        z = torch.zeros_like(x0)
        assert float(m.dist(m.proj_point(theirs.x_t), ours.x_t(x0, x1, t, z)).max()) < 1e-9
        assert torch.allclose(theirs.dx_t, ours.u_t(x0, x1, t, z), atol=1e-9)
