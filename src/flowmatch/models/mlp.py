"""Time-conditioned MLP velocity field v_theta(t, x) for vector data (B, D)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_choice, check_positive_int
from flowmatch.models.embeddings import make_time_embedding

__all__ = ["MLP", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


class MLP(nn.Module):
    """v_theta(x, t, cond) = MLP([x, emb(t), cond]).

    Defaults follow Tong et al. (TMLR 2024) for the 2D experiments: 3 hidden layers of width 64
    with SELU activations, t concatenated to the input.

    Args:
        dim: data dimension D (input and output).
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        activation: one of ``ACTIVATIONS``.
        time_embedding: ``"concat"`` or ``"sinusoidal"``; ``time_dim`` features for the latter.
        cond_dim: size of a conditioning vector concatenated to the input (0: unconditional).

    Called as ``model(x, t, cond=None)`` with x (B, D), t (B,), cond (B, cond_dim).

    Example:
        >>> import torch
        >>> from flowmatch.models import MLP
        >>> MLP(2)(torch.zeros(5, 2), torch.rand(5)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 3,
        activation: str = "selu",
        time_embedding: str = "concat",
        time_dim: int = 32,
        cond_dim: int = 0,
    ):
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        hidden = check_positive_int("hidden", hidden)
        depth = check_positive_int("depth", depth)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        if isinstance(cond_dim, bool) or not isinstance(cond_dim, int) or cond_dim < 0:
            raise ValueError(f"cond_dim must be an integer >= 0, got {cond_dim!r}")
        self.cond_dim = cond_dim
        self.config = dict(
            dim=dim,
            hidden=hidden,
            depth=depth,
            activation=activation,
            time_embedding=time_embedding,
            time_dim=time_dim,
            cond_dim=cond_dim,
        )
        self.time_embedding = make_time_embedding(time_embedding, time_dim)
        layers: list[nn.Module] = []
        width_in = dim + self.time_embedding.out_dim + cond_dim
        for _ in range(depth):
            layers += [nn.Linear(width_in, hidden), ACTIVATIONS[activation]()]
            width_in = hidden
        layers.append(nn.Linear(width_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLP expects x of shape (B, {self.dim}), got {tuple(x.shape)}")
        t = t.to(x.dtype)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        parts = [x, self.time_embedding(t)]
        if self.cond_dim:
            if cond is None:
                raise ValueError(f"this MLP is conditional (cond_dim={self.cond_dim}) but cond is None")
            parts.append(cond.reshape(x.shape[0], -1).to(x.dtype))
        return self.net(torch.cat(parts, dim=1))
