"""Consistency flow matching (Yang, Zhang, Zhao, Cai, Cui, Ning & Cui 2024, "Consistency Flow Matching:
Defining Straight Flows with Velocity Consistency"): a velocity network whose straight-line
extrapolation to the end of its time segment,

    f(x, t) = x + (T_k - t) v(x, t),    T_k = (k + 1) / K the end of the segment k holding t,

is the same at two nearby times of one conditional path, t and r = min(t + delta, T_k):

    L = E || f_theta(x_t, t) - f_sg(x_r, r) ||^2 + alpha || v_theta(x_t, t) - v_sg(x_r, r) ||^2,

divided by delta^2 so that its scale (and a gradient clip) does not depend on delta. ``sg`` stops
the gradient through the same network (improved consistency training's choice, Song & Dhariwal
2023, in place of the paper's EMA teacher). At r = T_k the target is x_r itself (f(x, T_k) = x), the
boundary condition that ties the segments to the data. To first order in delta the target is f
one step along the *marginal* flow (E[x_r | x_t] = x_t + delta u_t(x_t)), so the minimiser's f is
the flow map of the marginal ODE to T_k and v is constant along its trajectories: K Euler steps on
the segment grid land on the flow's endpoint, one step when K = 1. For a field v that is constant
the loss equals flow matching's, E || v - (x1 - x0) ||^2 (tested).

The network is an ordinary velocity field (``model(x, t, cond=...)``), so every model, condition,
mask and sampler works; sample it with ``solver="euler", steps=K`` (or any multiple of K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_nonnegative_float, check_positive_float, check_positive_int
from flowmatch.couplings import Coupling, Pairing
from flowmatch.data.conditioning import Condition
from flowmatch.data.masks import masked_mean
from flowmatch.models.contract import call_velocity
from flowmatch.objectives.cfm import FlowMatcher, PathSample
from flowmatch.paths import ProbabilityPath, pad_t

__all__ = ["ConsistencyMatcher", "ConsistencySample", "segment_end"]


@dataclass
class ConsistencySample(PathSample):
    """A :class:`PathSample` at ``t`` with the second time ``r`` (B,), the point ``x_r`` on the same
    conditional path (same pair and noise) and the end ``end`` (B,) of t's segment."""

    r: Tensor | None = None
    x_r: Tensor | None = None
    end: Tensor | None = None


def segment_end(t: Tensor, segments: int) -> Tensor:
    """(k + 1) / K for t in [k / K, (k + 1) / K); t = 1 belongs to the last segment."""
    k = torch.clamp(torch.floor(t * segments), max=segments - 1)
    return (k + 1) / segments


class ConsistencyMatcher(FlowMatcher):
    """The consistency flow matching objective on any path and coupling.

    Args:
        path: the conditional path (as for :class:`~flowmatch.objectives.cfm.FlowMatcher`).
        coupling: how x0 and x1 are paired (default independent).
        time_sampler: the law of t, rescaled to [0, 1 - delta] (default uniform).
        name: a label for logs.
        cond_dropout: as for :class:`~flowmatch.objectives.cfm.FlowMatcher` (guidance).
        delta: the time between the two points (paper: 1e-3).
        alpha: weight of the velocity consistency term (paper: 1e-5).
        segments: K, the number of time segments, each with its own endpoint (paper: 2 or 3);
            K Euler steps sample the trained field. 1 (default) trains a one-step sampler.

    Example:
        >>> import torch
        >>> from flowmatch.models import MLP
        >>> from flowmatch.paths import LinearPath
        >>> loss = ConsistencyMatcher(LinearPath(0.0)).loss(MLP(2), torch.randn(8, 2), torch.randn(8, 2))
        >>> loss.ndim
        0
    """

    def __init__(
        self,
        path: ProbabilityPath,
        coupling: Coupling | None = None,
        time_sampler=None,
        *,
        name: str | None = "cfm-consistency",
        cond_dropout: float = 0.0,
        delta: float = 1e-3,
        alpha: float = 1e-5,
        segments: int = 1,
    ):
        super().__init__(path, coupling, time_sampler, name=name, cond_dropout=cond_dropout)
        self.delta = check_positive_float("delta", delta)
        if not self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        self.alpha = check_nonnegative_float("alpha", alpha)
        self.segments = check_positive_int("segments", segments)
        if self.delta >= 1 / self.segments:
            raise ValueError(f"delta must be shorter than a segment (1 / {self.segments}), got {delta!r}")

    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        cond: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
        mask: Tensor | None = None,
    ) -> ConsistencySample:
        """The FlowMatcher's draws (pairs, t, noise, condition dropout), t rescaled to [0, 1 - delta];
        x_t and x_r from the same pair and noise."""
        s = super().sample(x0, x1, cond, generator=generator, pairing=pairing, mask=mask)
        t = s.t * (1 - self.delta)
        end = segment_end(t, self.segments)
        r = torch.minimum(t + self.delta, end)
        x_t = self.path.x_t(s.x0, s.x1, t, s.eps)
        u_t = self.path.u_t(s.x0, s.x1, t, s.eps)
        x_r = self.path.x_t(s.x0, s.x1, r, s.eps)
        if s.mask is not None:
            x_t, u_t, x_r = x_t * s.mask, u_t * s.mask, x_r * s.mask
        fields = {k: getattr(s, k) for k in ("x0", "x1", "eps", "cond", "mask", "loss_mask")}
        return ConsistencySample(t=t, x_t=x_t, u_t=u_t, r=r, x_r=x_r, end=end, **fields)

    def regression_loss(self, model: nn.Module, s: PathSample) -> Tensor:
        """(||f(x_t, t) - sg f(x_r, r)||^2 + alpha ||v(x_t, t) - sg v(x_r, r)||^2) / delta^2 over
        the valid elements."""
        if not isinstance(s, ConsistencySample) or s.x_r is None or s.r is None or s.end is None:
            raise ValueError(f"ConsistencyMatcher's loss needs a sample from its sample(), got {type(s).__name__}")
        v_t = call_velocity(model, s.x_t, s.t, s.cond, s.mask)
        with torch.no_grad():
            v_r = call_velocity(model, s.x_r, s.r, s.cond, s.mask)
        f_t = s.x_t + pad_t(s.end - s.t, s.x_t) * v_t
        f_r = s.x_r + pad_t(s.end - s.r, s.x_r) * v_r
        err = (f_t - f_r) ** 2 + self.alpha * (v_t - v_r) ** 2
        return masked_mean(err, s.loss_mask) / (self.delta * self.delta)

    def __repr__(self) -> str:
        return (
            f"ConsistencyMatcher(name={self.name!r}, path={self.path!r}, coupling={self.coupling!r}, "
            f"delta={self.delta}, alpha={self.alpha}, segments={self.segments})"
        )
