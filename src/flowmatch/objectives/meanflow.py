"""MeanFlow (Geng, Deng, Bai, Kolter & He 2025, "Mean Flows for One-step Generative Modeling"):
regress the average velocity u(x, t, h) = (1 / h) int_t^{t+h} v(x_s, s) ds of the flow started at
x_t = x (:mod:`flowmatch.models.average`) without simulating it.

With the endpoint t + h fixed, differentiating h u(x_t, t, h) = x_{t+h} - x_t along the flow in t
gives the MeanFlow identity, in this library's direction (t = 0 source, t = 1 data):

    u(x_t, t, h) = v(x_t, t) + h (d/dt) u(x_t, t, h),
    (d/dt) u = v . grad_x u + du/dt - du/dh,

the total derivative being one Jacobian-vector product of the network with the tangent
(v, 1, -1) in (x, t, h) (``torch.func.jvp``). The loss regresses u on the stopped target
v_c + h (d/dt) u with v_c the conditional velocity of the path (the paper's eq. 10, whose minimiser
is the marginal average velocity), with the adaptive weight w = 1 / (||Delta||^2 + c)^p of its
eq. 22 (detached; p = 0 is the plain squared error). A fraction ``1 - ratio`` of the rows has
h = 0, where the loss is flow matching's.

Times: (t_a, t_b) are drawn from the time sampler, start = min, end = max, h = end - start (then 0
on the rows without an interval), and x_t, u_t are drawn at the start from the path and coupling
of the :class:`~flowmatch.objectives.cfm.FlowMatcher` this subclasses, so every coupling (OT pairs
straighten the targets) and every path works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_nonnegative_float, check_positive_float, check_probability
from flowmatch.couplings import Coupling, Pairing
from flowmatch.data.conditioning import Condition
from flowmatch.models.average import call_average
from flowmatch.objectives.cfm import FlowMatcher, PathSample
from flowmatch.paths import ProbabilityPath, pad_t

__all__ = ["MeanFlowMatcher", "MeanFlowSample", "meanflow_target"]


@dataclass
class MeanFlowSample(PathSample):
    """A :class:`PathSample` at the start time ``t`` with the interval length ``h`` (B,)."""

    h: Tensor | None = None


def meanflow_target(model: nn.Module, x_t: Tensor, t: Tensor, h: Tensor, v: Tensor, cond=None) -> tuple[Tensor, Tensor]:
    """(u, target): the network's average velocity at (x_t, t, h) and the MeanFlow target
    v + h (d/dt) u, the total derivative by one JVP with tangent (v, 1, -1). The target is detached;
    u keeps its graph for the loss."""

    def fn(x: Tensor, tt: Tensor, hh: Tensor) -> Tensor:
        return call_average(model, x, tt, hh, cond)

    ones = torch.ones_like(t)
    out = torch.func.jvp(fn, (x_t, t, h), (v, ones, -ones))
    u, du_dt = out[0], out[1]
    return u, (v + pad_t(h, x_t) * du_dt).detach()


class MeanFlowMatcher(FlowMatcher):
    """The MeanFlow objective on any path and coupling.

    Args:
        path: the conditional path (as for :class:`~flowmatch.objectives.cfm.FlowMatcher`).
        coupling: how x0 and x1 are paired (default independent).
        time_sampler: the law of the two times (default uniform).
        name: a label for logs.
        ratio: fraction of rows with an interval h > 0 (the paper's best: 0.25); the others train
            the instantaneous velocity.
        weight_power: p of the adaptive weight 1 / (||Delta||^2 + c)^p (paper: 1; 0 = plain MSE).
        weight_eps: c (> 0).

    Example:
        >>> import torch
        >>> from flowmatch.models.average import AverageVelocityMLP
        >>> from flowmatch.paths import LinearPath
        >>> fm = MeanFlowMatcher(LinearPath(0.0))
        >>> loss = fm.loss(AverageVelocityMLP(2, hidden=16), torch.randn(8, 2), torch.randn(8, 2) + 2)
        >>> loss.ndim
        0
    """

    def __init__(
        self,
        path: ProbabilityPath,
        coupling: Coupling | None = None,
        time_sampler=None,
        *,
        name: str | None = "meanflow",
        ratio: float = 0.25,
        weight_power: float = 1.0,
        weight_eps: float = 1e-3,
    ):
        super().__init__(path, coupling, time_sampler, name=name)
        self.ratio = check_probability("ratio", ratio)
        self.weight_power = check_nonnegative_float("weight_power", weight_power)
        self.weight_eps = check_positive_float("weight_eps", weight_eps)

    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        cond: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
        mask: Tensor | None = None,
    ) -> MeanFlowSample:
        """The FlowMatcher's draws (pairing, t_a, eps, ...), then t_b and the rows with an interval,
        in that order from ``generator``; x_t and u_t at the start min(t_a, t_b)."""
        if mask is not None:
            raise ValueError("MeanFlowMatcher takes no mask (its network is unconditional and unpadded), got one")
        s = super().sample(x0, x1, cond, generator=generator, pairing=pairing)
        t_b = self.time_sampler(x0.shape[0], self.path, device=x0.device, dtype=x0.dtype, generator=generator)
        keep = torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype, generator=generator) < self.ratio
        start = torch.where(keep, torch.minimum(s.t, t_b), s.t)
        h = torch.where(keep, (s.t - t_b).abs(), torch.zeros_like(s.t))
        x_t = self.path.x_t(s.x0, s.x1, start, s.eps)
        u_t = self.path.u_t(s.x0, s.x1, start, s.eps)
        return MeanFlowSample(t=start, x_t=x_t, u_t=u_t, x0=s.x0, x1=s.x1, eps=s.eps, cond=s.cond, h=h)

    def regression_loss(self, model: nn.Module, s: PathSample) -> Tensor:
        """The adaptively weighted MeanFlow loss on a drawn :class:`MeanFlowSample`."""
        if not isinstance(s, MeanFlowSample) or s.h is None:
            raise ValueError(f"MeanFlowMatcher's loss needs a MeanFlowSample (from its sample), got {type(s).__name__}")
        u, target = meanflow_target(model, s.x_t, s.t, s.h, s.u_t, s.cond)
        err = ((u - target) ** 2).flatten(1).mean(1)
        if self.weight_power == 0:
            return err.mean()
        w = (err.detach() + self.weight_eps) ** (-self.weight_power)
        return (w * err).mean()

    def __repr__(self) -> str:
        return (
            f"MeanFlowMatcher(name={self.name!r}, path={self.path!r}, coupling={self.coupling!r}, "
            f"ratio={self.ratio}, weight_power={self.weight_power})"
        )
