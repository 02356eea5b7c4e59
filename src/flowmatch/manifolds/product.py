"""Euclidean space R^d (the trivial manifold) and products M_1 x ... x M_k.

A product stores a point as the concatenation of its factors' coordinates; exp, log, the
projections and the geodesic velocity act factor by factor, and the product metric gives
d(x, y)^2 = sum_i d_i(x^(i), y^(i))^2 and Vol(M) = prod_i Vol(M_i) (e.g. S^2 x T^1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int
from flowmatch.manifolds.base import Manifold

__all__ = ["Euclidean", "Product"]


class Euclidean(Manifold):
    """R^d: exp_x(u) = x + u, log_x(y) = y - x, straight geodesics (the paths of I-CFM with sigma = 0).

    It has no uniform law (infinite volume): :meth:`random_uniform` and :meth:`log_volume` raise.
    """

    name = "euclidean"

    def __init__(self, dim: int = 2):
        self.dim = check_positive_int("dim", dim)
        self.ambient_dim = self.dim

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        return x + u

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        return y - x

    def proj_point(self, x: Tensor) -> Tensor:
        return x

    def proj_tangent(self, x: Tensor, u: Tensor) -> Tensor:
        return u

    def random_uniform(self, n: int, *, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
        raise ValueError("Euclidean space has no uniform distribution (its volume is infinite); use a Gaussian source")

    def log_volume(self) -> float:
        raise ValueError("Euclidean space has infinite volume, so no uniform density")

    def distance_to_manifold(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)

    def geodesic_velocity(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        return x1 - x0


class Product(Manifold):
    """M_1 x ... x M_k with the product metric; points ``(B, sum_i ambient_dim_i)``.

    Example:
        >>> from flowmatch.manifolds import FlatTorus, Sphere
        >>> m = Product(Sphere(2), FlatTorus(1))
        >>> m.dim, m.ambient_dim
        (3, 4)
    """

    name = "product"

    def __init__(self, *factors: Manifold):
        if not factors or not all(isinstance(f, Manifold) for f in factors):
            names = [type(f).__name__ for f in factors]
            raise ValueError(f"Product needs one or more Manifold factors, got {names}")
        self.factors = tuple(factors)
        self.dim = check_positive_int("dim", sum(f.dim for f in factors))
        self.ambient_dim = sum(f.ambient_dim for f in factors)
        self._sizes = [f.ambient_dim for f in factors]

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        return torch.split(x, self._sizes, dim=-1)

    def _map2(self, name: str, x: Tensor, y: Tensor) -> Tensor:
        return torch.cat([getattr(f, name)(a, b) for f, a, b in zip(self.factors, self._split(x), self._split(y))], -1)

    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        return self._map2("exp", x, u)

    def log(self, x: Tensor, y: Tensor) -> Tensor:
        return self._map2("log", x, y)

    def proj_tangent(self, x: Tensor, u: Tensor) -> Tensor:
        return self._map2("proj_tangent", x, u)

    def proj_point(self, x: Tensor) -> Tensor:
        return torch.cat([f.proj_point(a) for f, a in zip(self.factors, self._split(x))], -1)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        sq = [f.dist(a, b) ** 2 for f, a, b in zip(self.factors, self._split(x), self._split(y))]
        return torch.stack(sq, 0).sum(0).sqrt()

    def random_uniform(self, n: int, *, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
        parts = [f.random_uniform(n, generator=generator, dtype=dtype, device=device) for f in self.factors]
        return torch.cat(parts, -1)

    def log_volume(self) -> float:
        return sum(f.log_volume() for f in self.factors)

    def distance_to_manifold(self, x: Tensor) -> Tensor:
        d = [f.distance_to_manifold(a) ** 2 for f, a in zip(self.factors, self._split(x))]
        return torch.stack(d, 0).sum(0).sqrt()

    def features(self, x: Tensor) -> Tensor:
        return torch.cat([f.features(a) for f, a in zip(self.factors, self._split(x))], -1)

    @property
    def feature_dim(self) -> int:
        return sum(f.feature_dim for f in self.factors)

    def geodesic_velocity(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        parts = [f.geodesic_velocity(a, b, t) for f, a, b in zip(self.factors, self._split(x0), self._split(x1))]
        return torch.cat(parts, -1)

    def __repr__(self) -> str:
        return f"Product({', '.join(repr(f) for f in self.factors)})"
