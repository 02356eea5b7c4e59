"""Exact minibatch OT on a manifold: the squared geodesic cost C_ij = d(x0_i, x1_j)^2.

The OT-CFM coupling (Tong et al. TMLR 2024) carried to a Riemannian manifold: on a minibatch the
plan minimising sum_ij pi_ij d(x0_i, x1_j)^2 is, for equal batch sizes, a permutation, solved by
the same exact assignment solvers as :class:`~flowmatch.couplings.ExactOT`. With the geodesic
conditional path (:class:`flowmatch.paths.geodesic.GeodesicPath`) the pairs then move along
shorter, less crossing geodesics, as minibatch OT does in Euclidean space (for the quadratic
cost on a compact manifold the OT map is exp_x(grad phi), McCann 2001).
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch.couplings.exact import ExactOT
from flowmatch.manifolds import Manifold

__all__ = ["GeodesicOT"]


class GeodesicOT(ExactOT):
    """:class:`~flowmatch.couplings.ExactOT` with C_ij = d_M(x0_i, x1_j)^2, computed in float64.

    Example:
        >>> import torch
        >>> from flowmatch.manifolds import FlatTorus
        >>> x0 = torch.tensor([[3.0], [0.0]]); x1 = torch.tensor([[0.1], [-3.0]])
        >>> GeodesicOT(FlatTorus(1))(x0, x1).i1.tolist()  # 3 and -3 are 0.28 apart across the seam
        [1, 0]
    """

    uses_mask = False

    def __init__(self, manifold: Manifold, solver: str = "auto"):
        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold must be a Manifold, got {type(manifold).__name__}")
        super().__init__(solver)
        self.manifold = manifold

    def cost(self, x0: Tensor, x1: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """The (n, m) float64 CPU matrix d(x0_i, x1_j)^2."""
        if mask is not None:
            raise ValueError("GeodesicOT pairs points on a manifold, not padded sequences; got a mask")
        a = x0.detach().to(device="cpu", dtype=torch.float64)
        b = x1.detach().to(device="cpu", dtype=torch.float64)
        return self.manifold.dist(a[:, None, :], b[None, :, :]) ** 2
