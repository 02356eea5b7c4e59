"""Riemannian conditional flow matching (Chen & Lipman, "Flow Matching on General Geometries",
ICLR 2024, Eq. 10):

    (x0, x1) ~ pi,  t ~ U[0, 1],  x_t = exp_{x0}(t log_{x0}(x1)),  u_t = d x_t / dt,
    L(theta) = E || P_{x_t} v_theta(t, x_t) - u_t ||_g^2,

the squared norm taken in the manifold's metric at x_t (for the embedded sphere and the flat torus,
the ambient dot product of tangent vectors). The model's prediction is projected onto T_{x_t} M
first, so that a network whose output leaves the tangent space is not charged for the normal part
(which the projected samplers discard anyway). The coupling pi is the product q0 x q1 (I-CFM) or
exact minibatch OT for the squared geodesic cost (OT-CFM on M:
:class:`~flowmatch.couplings.geodesic.GeodesicOT`).
"""

from __future__ import annotations

from torch import Tensor, nn

from flowmatch._utils.validate import check_choice
from flowmatch.couplings import Coupling, Independent
from flowmatch.couplings.geodesic import GeodesicOT
from flowmatch.manifolds import Manifold
from flowmatch.models.contract import call_velocity
from flowmatch.objectives.cfm import FlowMatcher, PathSample
from flowmatch.paths.geodesic import GeodesicPath

__all__ = ["RiemannianFlowMatcher", "RIEMANNIAN_METHODS", "riemannian_method"]

#: The methods of manifold runs: I-CFM (independent pairs) and OT-CFM (geodesic-cost OT pairs).
RIEMANNIAN_METHODS = ("i-cfm", "ot-cfm")


class RiemannianFlowMatcher(FlowMatcher):
    """CFM on ``manifold`` with the geodesic path; ``loss`` is E ||P_{x_t} v - u_t||_g^2 (module docstring).

    Example:
        >>> import torch
        >>> from flowmatch.manifolds import Sphere
        >>> fm = RiemannianFlowMatcher(Sphere(2))
        >>> g = torch.Generator().manual_seed(0)
        >>> x0, x1 = Sphere(2).random_uniform(8, generator=g), Sphere(2).random_uniform(8, generator=g)
        >>> s = fm.sample(x0, x1, generator=g)
        >>> bool(((s.x_t * s.u_t).sum(-1).abs() < 1e-5).all())  # u_t is tangent at x_t
        True
    """

    def __init__(
        self, manifold: Manifold, coupling: Coupling | None = None, time_sampler=None, *, name: str | None = None
    ):
        super().__init__(GeodesicPath(manifold), coupling, time_sampler, name=name or f"rfm-{manifold.name}")
        self.manifold = manifold

    def regression_loss(self, model: nn.Module, s: PathSample) -> Tensor:
        """mean_b ||P_{x_t} v_theta(t, x_t) - u_t||_g^2 over the batch."""
        v = self.manifold.proj_tangent(s.x_t, call_velocity(model, s.x_t, s.t, s.cond))
        diff = v - s.u_t
        return self.manifold.inner(s.x_t, diff, diff).mean()


def riemannian_method(name: str, manifold: Manifold, *, solver: str = "auto") -> RiemannianFlowMatcher:
    """``i-cfm`` (independent pairs) or ``ot-cfm`` (exact OT on the squared geodesic cost) on ``manifold``."""
    check_choice("method", name, RIEMANNIAN_METHODS)
    coupling: Coupling = Independent() if name == "i-cfm" else GeodesicOT(manifold, solver=solver)
    return RiemannianFlowMatcher(manifold, coupling, name=name)
