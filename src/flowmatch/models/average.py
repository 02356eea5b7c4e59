"""Average-velocity networks for few-step generation: u(x, t, h), the mean velocity of the flow
over [t, t + h] from the state x at time t, so that one step x_{t+h} = x_t + h u(x_t, t, h) is exact
for the exact u (MeanFlow, Geng et al. 2025, in this library's direction: t = 0 is the source).

The contract extends the velocity model's by one keyword: ``model(x, t, cond=None, h=None)``;
``h=None`` means h = 0, where the average velocity is the instantaneous one, so an average-velocity
network is also a velocity field for every ODE solver. :func:`call_average` calls it with ``h``
and checks the output like :func:`flowmatch.models.contract.call_velocity`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.models.cond import CondEmbedding
from flowmatch.models.contract import ModelContractError, check_output
from flowmatch.models.mlp import MLP

__all__ = ["AverageVelocityMLP", "call_average"]


def call_average(model: Callable[..., Any], x: Tensor, t: Tensor, h: Tensor, cond: Any = None) -> Tensor:
    """``model(x, t, cond=cond, h=h)``, checked to return a tensor of ``x``'s shape."""
    try:
        out = model(x, t, cond=cond, h=h)
    except TypeError as e:
        if "h" not in str(e):
            raise
        raise ModelContractError(
            f"an average-velocity model is called as model(x, t, cond=None, h=None), got a TypeError from "
            f"{type(model).__name__}: {e}"
        ) from None
    return check_output(model, out, x, "average-velocity output")


class AverageVelocityMLP(nn.Module):
    """An MLP of (x, t, h): the :class:`~flowmatch.models.MLP` with h as one more input feature, and
    with ``num_classes > 0`` a class label's learned embedding too (as in
    :class:`~flowmatch.models.cond.ConditionalMLP`, with a null class for classifier-free guidance).

    Args:
        dim: data dimension D (inputs and outputs are (B, D)).
        hidden: width of the hidden layers (as for :class:`~flowmatch.models.MLP`).
        depth: number of hidden layers.
        activation: the MLP's activation.
        time_embedding: ``"concat"`` or ``"sinusoidal"`` (for t; h is one more input feature).
        time_dim: features of the sinusoidal embedding.
        num_classes: K > 0 for a class-conditional network (labels in ``[0, K)``; -1 or
            ``cond=None``: the null class); 0 for an unconditional one.
        cond_embed_dim: embedding size of the labels.

    Example:
        >>> import torch
        >>> net = AverageVelocityMLP(2, hidden=16)
        >>> x, t = torch.zeros(3, 2), torch.rand(3)
        >>> bool(torch.equal(net(x, t), net(x, t, h=torch.zeros(3))))  # h = None is h = 0
        True
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 3,
        activation: str = "selu",
        time_embedding: str = "concat",
        time_dim: int = 32,
        num_classes: int = 0,
        cond_embed_dim: int = 32,
    ):
        super().__init__()
        self.cond_embed: CondEmbedding | None = None
        if num_classes:
            self.cond_embed = CondEmbedding(num_classes, None, cond_embed_dim, project=False)
        extra = 0 if self.cond_embed is None else self.cond_embed.out_dim
        self.net = MLP(
            dim,
            hidden=hidden,
            depth=depth,
            activation=activation,
            time_embedding=time_embedding,
            time_dim=time_dim,
            cond_dim=1 + extra,
        )
        self.dim = dim
        self.num_classes = num_classes
        self.config = {**self.net.config, "cond_dim": 0, "num_classes": num_classes}

    def forward(self, x: Tensor, t: Tensor, cond: Any = None, h: Tensor | None = None) -> Tensor:
        if cond is not None and self.cond_embed is None:
            raise ValueError("this AverageVelocityMLP is unconditional (num_classes=0); got a condition")
        if h is None:
            h = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        elif h.dim() == 0:
            h = h.expand(x.shape[0])
        features = h.to(x.dtype).reshape(-1, 1)
        if self.cond_embed is not None:
            features = torch.cat([features, self.cond_embed(cond, x.shape[0]).to(x.dtype)], dim=1)
        return self.net(x, t, cond=features)
