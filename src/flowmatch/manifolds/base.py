"""The manifold interface: points in an ambient coordinate space, with exp, log, projections,
geodesic distance, the uniform law and the metric (Chen & Lipman, "Flow Matching on General
Geometries", ICLR 2024, Section 3).

A manifold M of dimension ``dim`` stores its points as rows of ``(B, ambient_dim)`` tensors: the
sphere S^d as unit vectors of R^{d+1}, the flat torus T^d as angles in [-pi, pi)^d, a product as
the concatenation of its factors' coordinates. Tangent vectors at x live in the same coordinates;
``proj_tangent(x, u)`` is the orthogonal projection onto T_x M, and the metric is the one the
ambient Euclidean inner product induces on T_x M (so ||u||_g^2 = sum_i u_i^2 for tangent u).

The geodesic from x0 to x1 is gamma(t) = exp_{x0}(t log_{x0}(x1)); its velocity is
d gamma / dt = log_{gamma(t)}(x1) / (1 - t) for t < 1 (the remaining geodesic, walked in the
remaining time), which every manifold gives in closed form in :meth:`Manifold.geodesic_velocity`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["Manifold", "check_points"]


def check_points(manifold: Manifold, x: Tensor, name: str = "x", *, atol: float = 1e-4) -> Tensor:
    """``x`` if it is a ``(B, ambient_dim)`` batch of finite points on ``manifold`` (within ``atol``),
    else a one-line ValueError naming the rule and the value."""
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != manifold.ambient_dim:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape (B, {manifold.ambient_dim}) on {manifold!r}, got {shape}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got {int((~torch.isfinite(x)).sum())} non-finite entries")
    err = float(manifold.distance_to_manifold(x).max()) if x.shape[0] else 0.0
    if err > atol:
        raise ValueError(f"{name} must lie on {manifold!r} (within {atol}), got a point {err:.3g} away")
    return x


class Manifold(ABC):
    """A Riemannian manifold embedded in (or charted by) ``ambient_dim`` coordinates."""

    #: intrinsic dimension d
    dim: int
    #: number of coordinates of a point (d + 1 for S^d, d for T^d)
    ambient_dim: int
    #: the name used by the CLI (``--manifold``)
    name: str = "manifold"

    @abstractmethod
    def exp(self, x: Tensor, u: Tensor) -> Tensor:
        """The exponential map exp_x(u): the end point at time 1 of the geodesic from x with velocity u."""

    @abstractmethod
    def log(self, x: Tensor, y: Tensor) -> Tensor:
        """The logarithm log_x(y): the tangent vector at x with exp_x(log_x(y)) = y, ||log_x(y)|| = dist(x, y)."""

    @abstractmethod
    def proj_point(self, x: Tensor) -> Tensor:
        """The nearest point of M to ambient coordinates x (the identity on M)."""

    @abstractmethod
    def proj_tangent(self, x: Tensor, u: Tensor) -> Tensor:
        """The orthogonal projection of an ambient vector u onto T_x M."""

    @abstractmethod
    def random_uniform(self, n: int, *, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
        """n points drawn from the uniform (normalised Riemannian volume) law, ``(n, ambient_dim)``."""

    @abstractmethod
    def log_volume(self) -> float:
        """log Vol(M); the uniform density is exp(-log_volume()) with respect to the volume."""

    @abstractmethod
    def distance_to_manifold(self, x: Tensor) -> Tensor:
        """How far each row of x is from M, ``(B,)`` (0 on M): the check of every sampler."""

    def features(self, x: Tensor) -> Tensor:
        """Smooth coordinates of x for a network (the sphere: x itself; the torus: cos and sin of the
        angles, so that the network is periodic). Default: x."""
        return x

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`features`."""
        return self.ambient_dim

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """The metric g_x(u, v) of tangent vectors, ``(B,)``: the ambient dot product."""
        return (u * v).sum(-1)

    def norm(self, x: Tensor, u: Tensor) -> Tensor:
        """||u||_g, ``(B,)``."""
        return self.inner(x, u, u).clamp_min(0).sqrt()

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Geodesic distance d(x, y) = ||log_x(y)||; broadcasts over leading dimensions."""
        return torch.linalg.vector_norm(self.log(x, y), dim=-1)

    def geodesic(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """gamma(t) = exp_{x0}(t log_{x0}(x1)), t of shape (B,)."""
        return self.exp(x0, t[:, None] * self.log(x0, x1))

    @abstractmethod
    def geodesic_velocity(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """d/dt exp_{x0}(t log_{x0}(x1)) in closed form, t of shape (B,)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dim})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))


def log_sphere_volume(d: int) -> float:
    """log Vol(S^d) = log(2 pi^{(d+1)/2} / Gamma((d+1)/2)) (4 pi for S^2)."""
    return math.log(2.0) + 0.5 * (d + 1) * math.log(math.pi) - math.lgamma(0.5 * (d + 1))
