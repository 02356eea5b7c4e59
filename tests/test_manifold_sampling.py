"""Projected solvers on S^2 and T^2 (order of accuracy on closed-form flows, points kept on the
manifold) and the likelihood with the Riemannian divergence (closed-form divergence and density,
densities that integrate to 1)."""

from __future__ import annotations

import math

import pytest
import torch

from flowmatch.manifolds import FlatTorus, Sphere, wrap
from flowmatch.models.manifold import ManifoldMLP
from flowmatch.sampling.manifold import manifold_divergence, manifold_log_prob, sample_manifold

W = torch.tensor([0.3, -0.5, 0.8])


def rotation(x, t, cond=None):
    """v(x) = w x x on S^2: its flow is the rotation exp(t [w]_x)."""
    return torch.linalg.cross(W.to(x.dtype).expand_as(x), x)


def rotated(x0, t):
    """Rodrigues: rotation of x0 about w by the angle |w| t."""
    w = W.to(x0.dtype)
    a, k = float(torch.linalg.vector_norm(w)) * t, w / torch.linalg.vector_norm(w)
    kx = torch.linalg.cross(k.expand_as(x0), x0)
    return x0 * math.cos(a) + kx * math.sin(a) + k * (x0 @ k)[:, None] * (1 - math.cos(a))


def sine(x, t, cond=None):
    """v(theta) = (sin theta_1, 1) on T^2: tan(theta_1(t)/2) = tan(theta_1(0)/2) e^t, theta_2 + t."""
    return torch.stack([torch.sin(x[:, 0]), torch.ones_like(x[:, 0])], -1)


def sine_flow(x0, t):
    return wrap(torch.stack([2 * torch.atan(torch.tan(x0[:, 0] / 2) * math.exp(t)), x0[:, 1] + t], -1))


@pytest.mark.parametrize("solver, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_projected_solvers_reach_their_order_on_the_sphere_and_the_torus(solver, order):
    g = torch.Generator().manual_seed(0)
    cases = [
        (Sphere(2), rotation, rotated, Sphere(2).random_uniform(64, generator=g, dtype=torch.float64)),
        (FlatTorus(2), sine, sine_flow, 0.8 * FlatTorus(2).random_uniform(64, generator=g, dtype=torch.float64)),
    ]
    for m, field, exact, x0 in cases:
        errs = []
        for steps in (8, 16, 32):
            x = sample_manifold(field, m, x0, solver=solver, steps=steps).x
            errs.append(float(m.dist(x, exact(x0, 1.0)).max()))
        rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
        assert min(rates) > order - 0.3, (m, errs, rates)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_samplers_keep_points_on_the_manifold_to_1e_6(solver):
    g = torch.Generator().manual_seed(1)
    for m in (Sphere(2), FlatTorus(2)):
        torch.manual_seed(0)
        model = ManifoldMLP(m, hidden=32)
        with torch.no_grad():  # a strong random field: large steps drift far off M before the projection
            for p in model.parameters():
                p.mul_(3.0)
        x0 = m.random_uniform(512, generator=g)
        res = sample_manifold(model, m, x0, solver=solver, steps=7, return_trajectory=True)
        traj = res.require_trajectory()
        assert traj.shape == (8, 512, m.ambient_dim) and res.nfe == 7 * {"euler": 1, "midpoint": 2, "rk4": 4}[solver]
        assert float(m.distance_to_manifold(traj.reshape(-1, m.ambient_dim)).max()) < 1e-6
        assert res.x.dtype == torch.float32


def height(x, t, cond=None):
    """k P_x e_z: the gradient of k z on S^2, divergence -2 k z."""
    k = 1.3
    ez = torch.zeros_like(x)
    ez[:, 2] = 1
    return k * (ez - x[:, 2:3] * x)


def test_the_riemannian_divergence_has_its_closed_form():
    g = torch.Generator().manual_seed(2)
    s = Sphere(2)
    x = s.random_uniform(100, generator=g, dtype=torch.float64)
    t = torch.zeros(100, dtype=torch.float64)
    _, div = manifold_divergence(height, s, x, t)
    assert torch.allclose(div, -2 * 1.3 * x[:, 2], atol=1e-12)
    _, div = manifold_divergence(rotation, s, x, t)  # an isometry's field is divergence free
    assert torch.allclose(div, torch.zeros_like(div), atol=1e-12)

    def radial(x, t, cond=None):  # a normal field: the tangential divergence must ignore it
        return height(x, t) + 7 * x

    _, div = manifold_divergence(radial, s, x, t)
    assert torch.allclose(div, -2 * 1.3 * x[:, 2], atol=1e-12)
    th = FlatTorus(2).random_uniform(100, generator=g, dtype=torch.float64)
    _, div = manifold_divergence(sine, FlatTorus(2), th, t)
    assert torch.allclose(div, torch.cos(th[:, 0]), atol=1e-12)


def test_the_likelihood_of_the_height_flow_matches_its_closed_form():
    """dtheta/dt = -k sin theta (theta the polar angle) moves uniform mass north: with u = tan(theta/2),
    u_1 = u_0 e^{-k}, and p_1 = e^{2k} (1 + u_1^2)^2 / (1 + e^{2k} u_1^2)^2 / (4 pi)."""
    s, k = Sphere(2), 1.3
    x1 = s.random_uniform(200, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    res = manifold_log_prob(height, s, x1, solver="rk4", steps=40)
    theta = torch.atan2(torch.linalg.vector_norm(x1[:, :2], dim=-1), x1[:, 2])
    u1 = torch.tan(theta / 2)
    exact = 2 * k + 2 * torch.log1p(u1**2) - 2 * torch.log1p(math.exp(2 * k) * u1**2) - math.log(4 * math.pi)
    assert torch.allclose(res.log_prob, exact, atol=1e-6)
    # the pre-image: u_0 = u_1 e^k at the same longitude
    theta0 = torch.atan2(torch.linalg.vector_norm(res.x0[:, :2], dim=-1), res.x0[:, 2])
    assert torch.allclose(torch.tan(theta0 / 2), u1 * math.exp(k), rtol=1e-6, atol=1e-8)


def _sphere_grid(n_z, n_phi):
    """Midpoints in (z, phi): each cell has area (2 / n_z)(2 pi / n_phi) (Archimedes)."""
    z = -1 + (torch.arange(n_z, dtype=torch.float64) + 0.5) * 2 / n_z
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) * 2 * math.pi / n_phi
    zz, pp = torch.meshgrid(z, phi, indexing="ij")
    r = torch.sqrt(1 - zz**2)
    pts = torch.stack([r * torch.cos(pp), r * torch.sin(pp), zz], -1).reshape(-1, 3)
    return pts, (2 / n_z) * (2 * math.pi / n_phi)


def test_the_density_of_a_learned_field_integrates_to_one():
    torch.manual_seed(0)
    for m in (Sphere(2), FlatTorus(2)):
        model = ManifoldMLP(m, hidden=16, depth=2).double()
        if isinstance(m, Sphere):
            pts, area = _sphere_grid(48, 96)
        else:
            a = -math.pi + (torch.arange(64, dtype=torch.float64) + 0.5) * 2 * math.pi / 64
            pts = torch.cartesian_prod(a, a)
            area = (2 * math.pi / 64) ** 2
        res = manifold_log_prob(model, m, pts, solver="rk4", steps=12, chunk_size=2048)
        mass = float(res.log_prob.exp().sum() * area)
        assert mass == pytest.approx(1.0, abs=2e-3), m
        assert float(res.log_prob.std()) > 0.05  # the field is far from measure preserving


def test_bad_solver_input():
    with pytest.raises(ValueError, match="unknown solver 'dopri5'"):
        sample_manifold(rotation, Sphere(2), torch.tensor([[1.0, 0, 0]]), solver="dopri5")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        sample_manifold(rotation, Sphere(2), torch.tensor([[1.0, 0, 0]]), steps=0)
    with pytest.raises(ValueError, match="must lie on Sphere"):
        manifold_log_prob(rotation, Sphere(2), torch.tensor([[1.0, 1.0, 0]]))
