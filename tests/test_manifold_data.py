"""Built-in manifold data: exact densities that integrate to 1, samplers whose moments match the
closed forms and the densities, determinism from a seed."""

from __future__ import annotations

import math

import pytest
import torch

from flowmatch.data.manifold_toys import VonMisesFisherMixture, WrappedGaussianMixture, manifold_target


def _sphere_grid(n_z, n_phi):
    z = -1 + (torch.arange(n_z, dtype=torch.float64) + 0.5) * 2 / n_z
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) * 2 * math.pi / n_phi
    zz, pp = torch.meshgrid(z, phi, indexing="ij")
    r = torch.sqrt(1 - zz**2)
    return torch.stack([r * torch.cos(pp), r * torch.sin(pp), zz], -1).reshape(-1, 3), 4 * math.pi / (n_z * n_phi)


def _torus_grid(n):
    a = -math.pi + (torch.arange(n, dtype=torch.float64) + 0.5) * 2 * math.pi / n
    return torch.cartesian_prod(a, a), (2 * math.pi / n) ** 2


def test_the_densities_integrate_to_one():
    pts, area = _sphere_grid(400, 800)
    assert float(manifold_target("vmf-mixture").log_prob(pts).exp().sum() * area) == pytest.approx(1, abs=1e-4)
    pts, area = _torus_grid(400)
    assert float(manifold_target("wrapped-gaussians").log_prob(pts).exp().sum() * area) == pytest.approx(1, abs=1e-6)


def test_vmf_sampler_has_the_closed_form_mean_resultant_length():
    """E[mu . x] = coth(kappa) - 1/kappa, and the tangent part is isotropic (mean 0)."""
    for kappa in (0.5, 5.0, 50.0):
        mu = torch.tensor([[0.2, -0.4, 0.9]])
        d = VonMisesFisherMixture(mu, torch.tensor([kappa]), torch.tensor([1.0]))
        x = d.sample(40000, generator=torch.Generator().manual_seed(0)).double()
        assert float((torch.linalg.vector_norm(x, dim=1) - 1).abs().max()) < 1e-6
        m = d.means[0]
        r = x @ m
        expected = 1 / math.tanh(kappa) - 1 / kappa
        sd = float(r.std()) / math.sqrt(len(r))
        assert abs(float(r.mean()) - expected) < 5 * sd + 1e-4
        tang = x - r[:, None] * m
        assert float(torch.linalg.vector_norm(tang.mean(0))) < 0.02


def test_vmf_mixture_samples_match_the_density_moments():
    d = manifold_target("vmf-mixture")
    pts, area = _sphere_grid(300, 600)
    w = d.log_prob(pts).exp() * area
    x = d.sample(50000, generator=torch.Generator().manual_seed(1)).double()
    for f in (lambda p: p, lambda p: p[:, :1] * p[:, 1:]):
        assert torch.allclose(f(x).mean(0), (f(pts) * w[:, None]).sum(0), atol=0.015)


def test_wrapped_gaussian_samples_match_the_closed_form_and_the_density():
    """E[cos(theta - m)] = exp(-s^2 / 2) for a wrapped normal; mixture moments vs the density."""
    d = WrappedGaussianMixture(torch.tensor([[3.0, -2.0]]), torch.tensor([[0.7, 1.5]]), torch.tensor([1.0]))
    x = d.sample(50000, generator=torch.Generator().manual_seed(2)).double()
    assert float(x.min()) >= -math.pi and float(x.max()) < math.pi
    got = torch.cos(x - d.locs[0]).mean(0)
    assert torch.allclose(got, torch.exp(-0.5 * d.scales[0] ** 2), atol=0.01)
    pts, area = _torus_grid(300)
    assert float(d.log_prob(pts).exp().sum() * area) == pytest.approx(1, abs=1e-6)  # wide: needs the wrapping
    t = manifold_target("wrapped-gaussians")
    x = t.sample(50000, generator=torch.Generator().manual_seed(3)).double()
    w = t.log_prob(pts).exp() * area
    feats = lambda p: torch.cat([torch.cos(p), torch.sin(p)], -1)  # noqa: E731
    assert torch.allclose(feats(x).mean(0), (feats(pts) * w[:, None]).sum(0), atol=0.015)


def test_log_prob_is_periodic_and_draws_are_deterministic():
    t = manifold_target("wrapped-gaussians")
    x = t.sample(100, generator=torch.Generator().manual_seed(4)).double()
    assert torch.allclose(
        t.log_prob(x), t.log_prob(x + 2 * math.pi * torch.tensor([1.0, -1.0], dtype=torch.float64)), atol=1e-10
    )
    a = manifold_target("vmf-mixture").sample(10, generator=torch.Generator().manual_seed(5))
    b = manifold_target("vmf-mixture").sample(10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_bad_targets_are_one_line_value_errors():
    with pytest.raises(ValueError, match="lives on the sphere, not the torus"):
        manifold_target("vmf-mixture", "torus")
    with pytest.raises(ValueError, match="unknown manifold target 'moons'"):
        manifold_target("moons")
    with pytest.raises(ValueError, match="kappas must be 1 positive finite numbers"):
        VonMisesFisherMixture(torch.tensor([[0.0, 0, 1]]), torch.tensor([0.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="weights must be 1 positive numbers"):
        WrappedGaussianMixture(torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([-1.0]))
