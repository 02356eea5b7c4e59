"""Shortcut models (Frans, Hafner, Levine & Abbeel 2024, "One Step Diffusion via Shortcut Models"):
a network of the step size, s(x, t, d), trained by flow matching at d = 0 and by self-consistency
across sizes: two steps of size d make one of size 2d,

    s(x_t, t, 2d) = (s(x_t, t, d) + s(x', t + d, d)) / 2,    x' = x_t + d s(x_t, t, d),

the target (right-hand side) computed without gradient. The exact average velocity of a flow,
u(x, t, h) = (x_{t+h} - x_t) / h (:mod:`flowmatch.models.average`), satisfies it exactly, so a
shortcut network is an average-velocity network with h = d and samples by
:func:`flowmatch.sample_average` with any power-of-two number of steps down to ``1 / min_step``.

Each batch: a fraction ``consistency`` of its rows draws d = 2^-k (k uniform in 0 .. log2(M) - 1,
M = ``1 / min_step``) and t uniform on the grid of multiples of 2d below 1, the paper's choice; the
other rows are flow matching (d = 0) on the path and coupling of the
:class:`~flowmatch.objectives.cfm.FlowMatcher` this subclasses.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_probability
from flowmatch.couplings import Coupling, Pairing
from flowmatch.data.conditioning import Condition
from flowmatch.models.average import call_average
from flowmatch.objectives.cfm import FlowMatcher, PathSample
from flowmatch.objectives.meanflow import MeanFlowSample
from flowmatch.paths import ProbabilityPath, pad_t

__all__ = ["ShortcutMatcher", "shortcut_target"]


def shortcut_target(model: nn.Module, x_t: Tensor, t: Tensor, d: Tensor, cond=None) -> Tensor:
    """(s(x_t, t, d) + s(x', t + d, d)) / 2 with x' = x_t + d s(x_t, t, d), without gradient: the
    target of s(x_t, t, 2d)."""
    with torch.no_grad():
        first = call_average(model, x_t, t, d, cond)
        second = call_average(model, x_t + pad_t(d, x_t) * first, t + d, d, cond)
    return (first + second) / 2


class ShortcutMatcher(FlowMatcher):
    """The shortcut objective on any path and coupling.

    Args:
        path: the conditional path (as for :class:`~flowmatch.objectives.cfm.FlowMatcher`).
        coupling: how x0 and x1 are paired (default independent).
        time_sampler: the law of t of the flow matching rows (default uniform).
        name: a label for logs.
        consistency: fraction of rows trained by self-consistency (paper: 1/4).
        min_step: the smallest step size d, a power of two's inverse (paper: 1/128).

    Example:
        >>> import torch
        >>> from flowmatch.models.average import AverageVelocityMLP
        >>> from flowmatch.paths import LinearPath
        >>> loss = ShortcutMatcher(LinearPath(0.0)).loss(AverageVelocityMLP(2), torch.randn(8, 2), torch.randn(8, 2))
        >>> loss.ndim
        0
    """

    def __init__(
        self,
        path: ProbabilityPath,
        coupling: Coupling | None = None,
        time_sampler=None,
        *,
        name: str | None = "shortcut",
        consistency: float = 0.25,
        min_step: float = 1 / 128,
    ):
        super().__init__(path, coupling, time_sampler, name=name)
        self.consistency = check_probability("consistency", consistency)
        levels = math.log2(1 / min_step) if 0 < min_step < 1 else float("nan")
        if not (levels >= 1 and levels == int(levels)):
            raise ValueError(f"min_step must be 1 / 2^k with k >= 1 (e.g. 1/128), got {min_step!r}")
        self.min_step = float(min_step)
        self.levels = int(levels)

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
        """The FlowMatcher's draws, then the consistency rows, their d and t (in that order); x_t at
        the row's t, ``h`` the step d (0 on the flow matching rows)."""
        if mask is not None:
            raise ValueError("ShortcutMatcher takes no mask (its network is unconditional and unpadded), got one")
        s = super().sample(x0, x1, cond, generator=generator, pairing=pairing)
        n, dev, dt = x0.shape[0], x0.device, x0.dtype
        sc = torch.rand(n, device=dev, dtype=dt, generator=generator) < self.consistency
        k = torch.randint(0, self.levels, (n,), device=dev, generator=generator)
        d = torch.pow(2.0, -(k + 1).to(dt))  # 1/2 .. min_step; the target is the step 2d <= 1
        slots = torch.floor(torch.rand(n, device=dev, dtype=dt, generator=generator) / (2 * d))
        t = torch.where(sc, slots * 2 * d, s.t)
        h = torch.where(sc, d, torch.zeros_like(d))
        x_t = self.path.x_t(s.x0, s.x1, t, s.eps)
        u_t = self.path.u_t(s.x0, s.x1, t, s.eps)
        return MeanFlowSample(t=t, x_t=x_t, u_t=u_t, x0=s.x0, x1=s.x1, eps=s.eps, cond=s.cond, h=h)

    def regression_loss(self, model: nn.Module, s: PathSample) -> Tensor:
        """Flow matching on the rows with h = 0, s(x_t, t, 2h) against the two-step target elsewhere."""
        if not isinstance(s, MeanFlowSample) or s.h is None:
            raise ValueError(f"ShortcutMatcher's loss needs a sample from its sample(), got {type(s).__name__}")
        sc = s.h > 0
        target = s.u_t.clone()
        if bool(sc.any()):
            target[sc] = shortcut_target(model, s.x_t[sc], s.t[sc], s.h[sc], None if s.cond is None else s.cond[sc])
        pred = call_average(model, s.x_t, s.t, 2 * s.h, s.cond)
        return ((pred - target) ** 2).mean()

    def __repr__(self) -> str:
        return (
            f"ShortcutMatcher(name={self.name!r}, path={self.path!r}, coupling={self.coupling!r}, "
            f"consistency={self.consistency}, min_step={self.min_step})"
        )
