"""Riemannian manifolds for flow matching (Chen & Lipman, "Flow Matching on General Geometries",
ICLR 2024): the sphere S^d, the flat torus T^d, Euclidean space and products of them, each with
exp, log, projections, geodesic distance, the geodesic's velocity in closed form, the uniform law
and its volume (:mod:`~flowmatch.manifolds.base` describes the interface).
"""

from __future__ import annotations

from flowmatch._utils.validate import check_choice
from flowmatch.manifolds.base import Manifold, check_points
from flowmatch.manifolds.product import Euclidean, Product
from flowmatch.manifolds.sphere import Sphere
from flowmatch.manifolds.torus import FlatTorus, wrap

__all__ = [
    "Manifold",
    "Sphere",
    "FlatTorus",
    "Euclidean",
    "Product",
    "check_points",
    "wrap",
    "MANIFOLDS",
    "get_manifold",
]

#: The manifolds of ``--manifold``: the 2-sphere and the 2-torus.
MANIFOLDS = ("sphere", "torus")


def get_manifold(name: str, dim: int = 2) -> Manifold:
    """``sphere`` -> S^dim, ``torus`` -> T^dim."""
    check_choice("manifold", name, MANIFOLDS)
    return Sphere(dim) if name == "sphere" else FlatTorus(dim)
