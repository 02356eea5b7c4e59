"""Built-in distributions on manifolds with exact densities (issue 21, item 3), offline and
deterministic from a generator:

- ``vmf-mixture`` on S^2: a mixture of von Mises--Fisher laws,
  p(x) = sum_k w_k C(kappa_k) exp(kappa_k mu_k . x),  C(kappa) = kappa / (4 pi sinh kappa)
  (Fisher 1953; Mardia & Jupp, "Directional Statistics", 2000, Sec. 9.3), sampled exactly by
  Wood's (1994) inversion for S^2: w = mu . x = 1 + log(u + (1 - u) e^{-2 kappa}) / kappa with
  u ~ U(0, 1), and a uniform direction in mu's tangent plane.
- ``wrapped-gaussians`` on T^2: a mixture of wrapped normal laws of a torsion-angle-like pair
  (phi, psi), the three basins of a Ramachandran plot (right-handed helix, beta sheet across the
  psi = pi seam, left-handed helix); p(x) = sum_k w_k sum_{j in Z^2} N(x + 2 pi j; m_k, diag s_k^2),
  the wrapping sum truncated to |j_i| <= ``wraps`` (the terms left out are below
  exp(-(2 pi wraps - pi)^2 / (2 s^2)), under 1e-40 for the built-in s <= 0.5 and wraps = 2).

Densities are with respect to the Riemannian volume (area on S^2, d phi d psi on T^2), the measure
the likelihood of :mod:`flowmatch.sampling.manifold` uses, so NLLs compare directly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_positive_int
from flowmatch.manifolds import FlatTorus, Manifold, Sphere, wrap

__all__ = ["VonMisesFisherMixture", "WrappedGaussianMixture", "MANIFOLD_TARGETS", "manifold_target"]


def _weights(weights: Tensor, k: int) -> Tensor:
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (k,) or not torch.isfinite(w).all() or (w <= 0).any():
        raise ValueError(f"weights must be {k} positive numbers, got {w.tolist()}")
    return w / w.sum()


def _components(weights: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    return torch.multinomial(weights, n, replacement=True, generator=generator)


@dataclass(frozen=True)
class VonMisesFisherMixture:
    """sum_k w_k vMF(mu_k, kappa_k) on S^2; means ``(K, 3)`` (normalised), kappas ``(K,)`` > 0."""

    means: Tensor
    kappas: Tensor
    weights: Tensor

    def __post_init__(self) -> None:
        mu = torch.as_tensor(self.means, dtype=torch.float64)
        if mu.dim() != 2 or mu.shape[1] != 3 or (torch.linalg.vector_norm(mu, dim=1) == 0).any():
            raise ValueError(f"means must be nonzero vectors of shape (K, 3), got shape {tuple(mu.shape)}")
        k = torch.as_tensor(self.kappas, dtype=torch.float64)
        if k.shape != (mu.shape[0],) or not torch.isfinite(k).all() or (k <= 0).any():
            raise ValueError(f"kappas must be {mu.shape[0]} positive finite numbers, got {k.tolist()}")
        object.__setattr__(self, "means", mu / torch.linalg.vector_norm(mu, dim=1, keepdim=True))
        object.__setattr__(self, "kappas", k)
        object.__setattr__(self, "weights", _weights(self.weights, mu.shape[0]))

    @property
    def manifold(self) -> Manifold:
        return Sphere(2)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws ``(n, 3)`` (float32), by component then Wood's inversion."""
        n = check_positive_int("n", n)
        c = _components(self.weights, n, generator)
        mu, kappa = self.means[c], self.kappas[c]
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        w = 1 + torch.log(u + (1 - u) * torch.exp(-2 * kappa)) / kappa
        v = torch.randn(n, 3, generator=generator, dtype=torch.float64)
        v = v - (v * mu).sum(-1, keepdim=True) * mu
        v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        x = w[:, None] * mu + torch.sqrt((1 - w**2).clamp_min(0))[:, None] * v
        return Sphere(2).proj_point(x).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) ``(n,)`` w.r.t. area: logsumexp_k [log w_k + log C(kappa_k) + kappa_k mu_k . x], with
        log C(kappa) = log kappa - log 2 pi - kappa - log(1 - e^{-2 kappa}) (stable for large kappa)."""
        xx = x.to(torch.float64)
        k = self.kappas
        log_c = torch.log(k) - math.log(2 * math.pi) - k - torch.log1p(-torch.exp(-2 * k))
        terms = torch.log(self.weights) + log_c + k * (xx @ self.means.T)
        return torch.logsumexp(terms, dim=-1).to(x.dtype)


@dataclass(frozen=True)
class WrappedGaussianMixture:
    """sum_k w_k WrappedNormal(m_k, diag s_k^2) on T^d; locs and scales ``(K, d)``."""

    locs: Tensor
    scales: Tensor
    weights: Tensor
    wraps: int = 2

    def __post_init__(self) -> None:
        m = torch.as_tensor(self.locs, dtype=torch.float64)
        s = torch.as_tensor(self.scales, dtype=torch.float64)
        if m.dim() != 2 or s.shape != m.shape or not torch.isfinite(s).all() or (s <= 0).any():
            raise ValueError(
                f"locs and scales must have the same shape (K, d) with scales > 0, got {tuple(m.shape)} and {tuple(s.shape)}"
            )
        object.__setattr__(self, "locs", wrap(m))
        object.__setattr__(self, "scales", s)
        object.__setattr__(self, "weights", _weights(self.weights, m.shape[0]))
        object.__setattr__(self, "wraps", check_positive_int("wraps", self.wraps))

    @property
    def manifold(self) -> Manifold:
        return FlatTorus(self.locs.shape[1])

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws ``(n, d)`` in [-pi, pi) (float32): a normal draw, wrapped."""
        n = check_positive_int("n", n)
        c = _components(self.weights, n, generator)
        z = torch.randn(n, self.locs.shape[1], generator=generator, dtype=torch.float64)
        return wrap(self.locs[c] + self.scales[c] * z).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) ``(n,)`` w.r.t. d x on [-pi, pi)^d, by the truncated wrapping sum (module docstring)."""
        xx = wrap(x.to(torch.float64))
        d = self.locs.shape[1]
        shifts = torch.tensor(
            list(itertools.product(range(-self.wraps, self.wraps + 1), repeat=d)), dtype=torch.float64
        ) * (2 * math.pi)  # (J, d)
        diff = xx[:, None, None, :] + shifts[None, None] - self.locs[None, :, None, :]  # (n, K, J, d)
        s = self.scales[None, :, None, :]
        log_n = (-0.5 * (diff / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)).sum(-1)
        terms = torch.log(self.weights)[None, :, None] + log_n
        return torch.logsumexp(terms.reshape(xx.shape[0], -1), dim=-1).to(x.dtype)


def _vmf_mixture() -> VonMisesFisherMixture:
    """Five vMF(kappa = 20) caps at fixed directions, unequal weights: two near the equator of the
    lon/lat map, one at each pole region, one on the far side (across the map's seam)."""
    lon = torch.tensor([0.0, 1.6, -2.0, 3.0, 0.8])
    lat = torch.tensor([0.3, -0.2, 1.1, -0.9, -1.2])
    means = torch.stack([torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon), torch.sin(lat)], -1)
    return VonMisesFisherMixture(means, torch.tensor([20.0, 15.0, 30.0, 20.0, 10.0]), torch.tensor([3.0, 2, 2, 2, 1]))


def _torsion_pair() -> WrappedGaussianMixture:
    """(phi, psi) basins of a Ramachandran plot (radians): right-handed helix (-63, -43) deg, beta
    sheet (-120, 150) deg (its psi spread crosses the pi seam), left-handed helix (57, 47) deg."""
    deg = math.pi / 180
    locs = torch.tensor([[-63.0, -43.0], [-120.0, 150.0], [57.0, 47.0]]) * deg
    scales = torch.tensor([[0.25, 0.25], [0.35, 0.45], [0.2, 0.25]])
    return WrappedGaussianMixture(locs, scales, torch.tensor([0.5, 0.35, 0.15]))


ManifoldTarget = VonMisesFisherMixture | WrappedGaussianMixture

#: target name -> (manifold name, builder)
MANIFOLD_TARGETS: dict[str, tuple[str, Callable[[], ManifoldTarget]]] = {
    "vmf-mixture": ("sphere", _vmf_mixture),
    "wrapped-gaussians": ("torus", _torsion_pair),
}


def manifold_target(name: str, manifold: str | None = None) -> ManifoldTarget:
    """The built-in target ``name`` (``vmf-mixture`` on S^2, ``wrapped-gaussians`` on T^2); with
    ``manifold`` given, a ValueError unless the target lives on it."""
    check_choice("manifold target", name, tuple(MANIFOLD_TARGETS))
    where, build = MANIFOLD_TARGETS[name]
    if manifold is not None and manifold != where:
        names = [n for n, (m, _) in MANIFOLD_TARGETS.items() if m == manifold]
        raise ValueError(
            f"target {name!r} lives on the {where}, not the {manifold}; targets on the {manifold}: {names}"
        )
    return build()
