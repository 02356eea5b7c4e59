"""A velocity field and a score field in one module, for score and flow matching ([SF]2M)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["FlowAndScore", "has_score"]


def has_score(model: object) -> bool:
    """True when ``model`` has a callable ``score(x, t, cond=None)`` (e.g. :class:`FlowAndScore`)."""
    return callable(getattr(model, "score", None))


class FlowAndScore(nn.Module):
    """v_theta(t, x) and s_theta(t, x) ~ grad_x log p_t(x) as two networks in one module.

    ``forward(x, t, cond=None)`` returns the velocity, so every ODE sampler, metric and plot uses
    the module as a plain velocity model; ``score(x, t, cond=None)`` returns the score of the
    marginal path p_t (units 1/length, independent of the diffusion used to sample). Trained
    jointly by :class:`flowmatch.objectives.sf2m.ScoreFlowMatcher` (Tong et al., "Simulation-free
    Schrödinger bridges via score and flow matching", AISTATS 2024); sampled as an SDE by
    :func:`flowmatch.sample_sde`. Checkpoints hold ``flow.*`` and ``score_net.*`` weights.

    Args:
        flow: velocity network called as ``flow(x, t, cond)``.
        score: score network with the same call signature and output shape.

    Example:
        >>> import torch
        >>> from flowmatch.models import MLP, FlowAndScore
        >>> m = FlowAndScore(MLP(2), MLP(2))
        >>> x, t = torch.zeros(4, 2), torch.rand(4)
        >>> m(x, t).shape, m.score(x, t).shape
        (torch.Size([4, 2]), torch.Size([4, 2]))
    """

    def __init__(self, flow: nn.Module, score: nn.Module):
        super().__init__()
        for name, net in (("flow", flow), ("score", score)):
            if not isinstance(net, nn.Module):
                raise TypeError(f"{name} must be an nn.Module, got {type(net).__name__}")
        self.flow = flow
        self.score_net = score

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Velocity v_theta(t, x), shape (B, *dims)."""
        return self.flow(x, t, cond) if cond is not None else self.flow(x, t)

    def score(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Score s_theta(t, x) ~ grad_x log p_t(x), shape (B, *dims)."""
        return self.score_net(x, t, cond) if cond is not None else self.score_net(x, t)
