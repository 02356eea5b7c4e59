"""A velocity network on a manifold: an MLP on the manifold's smooth features, its output projected
onto the tangent space (Chen & Lipman, ICLR 2024, Section 4: "we parametrise v_theta in the ambient
space and project it", P_x v).

    v_theta(x, t) = P_x MLP([phi(x), t]),

with phi(x) = x on the sphere and (cos x, sin x) on the torus
(:meth:`flowmatch.manifolds.Manifold.features`), so the field is smooth (periodic on the torus) and
tangent by construction: the samplers that follow it stay on M up to their projection.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_choice, check_positive_int
from flowmatch.manifolds import Manifold
from flowmatch.models.embeddings import make_time_embedding
from flowmatch.models.mlp import ACTIVATIONS

__all__ = ["ManifoldMLP"]


class ManifoldMLP(nn.Module):
    """v_theta(x, t) = P_x MLP([features(x), emb(t)]) on ``manifold``; x ``(B, ambient_dim)``, t ``(B,)``.

    Example:
        >>> import torch
        >>> from flowmatch.manifolds import Sphere
        >>> m = ManifoldMLP(Sphere(2))
        >>> x = Sphere(2).random_uniform(4, generator=torch.Generator().manual_seed(0))
        >>> bool(((m(x, torch.rand(4)) * x).sum(-1).abs() < 1e-6).all())  # tangent output
        True
    """

    def __init__(
        self,
        manifold: Manifold,
        hidden: int = 64,
        depth: int = 3,
        activation: str = "selu",
        time_embedding: str = "concat",
        time_dim: int = 32,
    ):
        super().__init__()
        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold must be a Manifold, got {type(manifold).__name__}")
        self.manifold = manifold
        self.dim = manifold.ambient_dim
        hidden = check_positive_int("hidden", hidden)
        depth = check_positive_int("depth", depth)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        self.time_embedding = make_time_embedding(time_embedding, time_dim)
        layers: list[nn.Module] = []
        width = manifold.feature_dim + self.time_embedding.out_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, manifold.ambient_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"ManifoldMLP expects x of shape (B, {self.dim}), got {tuple(x.shape)}")
        if cond is not None:
            raise ValueError("ManifoldMLP is unconditional, got a cond")
        t = t.to(x.dtype)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        out = self.net(torch.cat([self.manifold.features(x), self.time_embedding(t)], dim=1))
        return self.manifold.proj_tangent(x, out)
