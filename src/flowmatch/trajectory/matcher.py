"""Trajectory inference from snapshots: multi-marginal flow matching across consecutive time points.

Given populations observed at times t_0 < ... < t_{K-1} (:class:`flowmatch.data.snapshots.Snapshots`),
learn one velocity field v(t, x) in the data's own time units whose flow carries p_{t_k} to
p_{t_{k+1}} for every k (Tong et al. TMLR 2024, Section 5.3; TorchCFM's trajectory code). Each
training pair belongs to one interval k: x0 from snapshot k, x1 from snapshot k+1, paired by the
method's coupling within the interval; the path's own time s ~ p(s) on [0, 1] is mapped to global
time and the conditional velocity is rescaled by the chain rule:

    t = t_k + s (t_{k+1} - t_k),      x_t = x_s(x0, x1, eps),      u_t = u_s / (t_{k+1} - t_k).

For a straight path u_s = x1 - x0, so u_t = (x1 - x0) / (t_{k+1} - t_k): the secant speed.

Batches are stratified over intervals (:func:`interval_blocks`): a batch of B pairs holds about
B / (K-1) pairs of each interval, in contiguous blocks, so every interval has the same weight in
the loss and the coupling never pairs across intervals (:class:`SnapshotBatches` draws the two
sides with the same layout).

Schrödinger bridges. For SB-CFM, ``sigma`` is the diffusion of the reference Brownian motion in
data time units, so interval k has the bridge sigma_k = sigma sqrt(t_{k+1} - t_k) in its own time s
and the entropic coupling epsilon = 2 sigma_k^2 = 2 sigma^2 (t_{k+1} - t_k) (the static SB of a
Brownian motion of diffusion sigma over that interval). In global time every interval then has the
same SDE dX = [v + (sigma^2 / 2) s_theta] dt + sigma dW, which :func:`push` integrates. The score
is a spatial gradient and needs no rescaling; its loss weight is the path's sigma_s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.couplings import Pairing
from flowmatch.data.snapshots import Snapshots
from flowmatch.objectives import methods
from flowmatch.objectives.cfm import FlowMatcher, PairingOverride, PathSample
from flowmatch.paths import pad_t

__all__ = ["interval_blocks", "SnapshotBatches", "SnapshotPathSample", "SnapshotLoss", "SnapshotMatcher"]


def interval_blocks(n: int, intervals: int) -> list[tuple[int, int]]:
    """Rows ``[lo, hi)`` of each interval in a batch of ``n``: sizes n // m, the first n % m one more."""
    n = check_positive_int("batch size", n)
    m = check_positive_int("intervals", intervals)
    if n < m:
        raise ValueError(f"batch size must be >= the number of intervals ({m}) so that each gets a pair, got {n}")
    sizes = [n // m + (1 if k < n % m else 0) for k in range(m)]
    bounds, lo = [], 0
    for s in sizes:
        bounds.append((lo, lo + s))
        lo += s
    return bounds


class SnapshotBatches:
    """Training batches of one side of the pairs: ``side="source"`` draws block k from snapshot k,
    ``side="target"`` from snapshot k+1 (distinct rows within a block, a fresh subset every call)."""

    def __init__(self, snapshots: Snapshots, side: str, *, device: torch.device | str = "cpu"):
        if side not in ("source", "target"):
            raise ValueError(f"side must be 'source' or 'target', got {side!r}")
        self.side = side
        shift = 0 if side == "source" else 1
        self.pops = [snapshots.populations[k + shift].to(device) for k in range(len(snapshots) - 1)]
        self.name = f"snapshot {side}"

    def check_batch_size(self, n: int) -> None:
        for (lo, hi), pop in zip(interval_blocks(n, len(self.pops)), self.pops):
            if hi - lo > pop.shape[0]:
                raise ValueError(
                    f"batch size must give each of the {len(self.pops)} intervals at most as many "
                    f"pairs as its smallest snapshot ({pop.shape[0]} points), got {n}"
                )

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        self.check_batch_size(n)
        parts = []
        for (lo, hi), pop in zip(interval_blocks(n, len(self.pops)), self.pops):
            idx = torch.randperm(pop.shape[0], generator=generator, device=pop.device)[: hi - lo]
            parts.append(pop[idx])
        return torch.cat(parts)


@dataclass
class SnapshotPathSample(PathSample):
    """A :class:`PathSample` in global time, plus per row: ``s`` the path's own time (B,),
    ``interval`` the interval index (B,) and ``sigma_s`` the path's noise level at s (B,)."""

    s: Tensor | None = None
    interval: Tensor | None = None
    sigma_s: Tensor | None = None


@dataclass
class SnapshotLoss:
    """The flow term, the score term (None without a score) and their sum (scalar tensors)."""

    flow: Tensor
    score: Tensor | None
    total: Tensor


class SnapshotMatcher(PairingOverride):
    """Multi-marginal flow matching over consecutive snapshot intervals (module docstring).

    Args:
        matchers: one :class:`FlowMatcher` per interval (or a single one for all), used for that
            interval's coupling, path and time sampler; e.g. built by :meth:`from_method`.
        times: the K >= 2 increasing time points t_0 .. t_{K-1} (data units).
        learns_score: add the [SF]2M score term for models with a ``score`` method.

    Used by :class:`flowmatch.training.trainer.Trainer` like a FlowMatcher, with :class:`SnapshotBatches` as
    source and target (the rows of both come in the blocks of :func:`interval_blocks`).
    """

    def __init__(
        self,
        matchers: FlowMatcher | Sequence[FlowMatcher],
        times: Sequence[float] | Tensor,
        *,
        learns_score: bool = False,
        name: str | None = None,
    ):
        times = torch.as_tensor(times, dtype=torch.float64).flatten()
        if times.shape[0] < 2 or not bool(torch.all(times[1:] > times[:-1])) or not bool(torch.isfinite(times).all()):
            raise ValueError(f"times must be at least 2 finite, strictly increasing values, got {times.tolist()}")
        m = times.shape[0] - 1
        if isinstance(matchers, FlowMatcher):
            matchers = [matchers] * m
        matchers = list(matchers)
        if len(matchers) != m or not all(isinstance(f, FlowMatcher) for f in matchers):
            raise ValueError(f"matchers must be a FlowMatcher or one per interval ({m}), got {len(matchers)}")
        self.times = times
        self.matchers = matchers
        self.learns_score = bool(learns_score)
        self.name = name or matchers[0].name
        self.coupling = matchers[0].coupling

    @classmethod
    def from_method(
        cls, method: str, times: Sequence[float] | Tensor, *, sigma: float | None = None, score: bool | None = None
    ) -> SnapshotMatcher:
        """The named method (:mod:`flowmatch.objectives.methods`) on every interval; for a method that learns a
        score (sb-cfm), ``sigma`` is the diffusion per unit of data time, so interval k gets the
        bridge sigma sqrt(t_{k+1} - t_k) (module docstring). ``score``: default the method's."""
        spec = methods.spec(method)
        if not spec.simulation_free or spec.requires_gaussian_source or not spec.is_flow:
            raise ValueError(
                f"snapshot training needs a method that flows between data sets, got {method!r}; "
                "choose one of: " + ", ".join(n for n in methods.names() if n not in ("cnf", "fm", "regression"))
            )
        sigma = spec.default_sigma if sigma is None else sigma
        times = torch.as_tensor(times, dtype=torch.float64).flatten()
        dts = (times[1:] - times[:-1]).tolist()
        matchers: FlowMatcher | list[FlowMatcher]
        if spec.learns_score:
            matchers = [methods.get_flow_matcher(method, sigma=sigma * math.sqrt(dt)) for dt in dts]
        else:
            matchers = methods.get_flow_matcher(method, sigma=sigma)
        learns = spec.learns_score if score is None else bool(score)
        return cls(matchers, times, learns_score=learns, name=method)

    @property
    def num_intervals(self) -> int:
        return len(self.matchers)

    # ------------------------------------------------------------------ pairing
    def prepare_pairing(
        self, x0: Tensor, x1: Tensor, cond: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Callable[[], Pairing] | None:
        """Draw every interval's coupling randomness now (intervals in order); a thunk that solves the
        intervals and returns one Pairing of the whole batch (None when every coupling is the identity)."""
        self._check(x0, x1, cond)
        blocks = interval_blocks(x0.shape[0], self.num_intervals)
        thunks = [
            f.prepare_pairing(x0[lo:hi], x1[lo:hi], generator=generator) for f, (lo, hi) in zip(self.matchers, blocks)
        ]
        if all(th is None for th in thunks):
            return None

        def assemble() -> Pairing:
            i0, i1 = [], []
            for (lo, hi), th in zip(blocks, thunks):
                idx = torch.arange(hi - lo, device=x0.device)
                sub = Pairing(idx, idx) if th is None else th()
                if len(sub) != hi - lo:
                    raise ValueError(
                        f"snapshot training needs a coupling with one pair per row of an interval, "
                        f"got {len(sub)} pairs for {hi - lo} rows"
                    )
                i0.append(sub.i0.to(x0.device) + lo)
                i1.append(sub.i1.to(x1.device) + lo)
            return Pairing(torch.cat(i0), torch.cat(i1))

        return assemble

    def _check(self, x0: Tensor, x1: Tensor, cond: Tensor | None) -> None:
        if cond is not None:
            raise ValueError("snapshot training takes no condition, got a cond tensor")
        if x0.shape != x1.shape or x0.dim() < 2:
            raise ValueError(
                f"x0 and x1 must be batches of the same shape (B, *dims), got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )

    # ------------------------------------------------------------------ path samples and loss
    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
    ) -> SnapshotPathSample:
        """Pair within intervals, draw s and eps, return x_t at global time t with u_t = u_s / dt_k.

        Row b of block k (:func:`interval_blocks`) is a pair of interval k. Draw order: the
        couplings (intervals in order; skipped with a ``pairing``), s per interval, then eps."""
        self._check(x0, x1, cond)
        if pairing is None:
            pairing = self._pairing_override
        if pairing is None:
            thunk = self.prepare_pairing(x0, x1, generator=generator)
            pairing = thunk() if thunk is not None else None
        if pairing is not None:
            x0, x1 = pairing.apply(x0, x1)
        blocks = interval_blocks(x0.shape[0], self.num_intervals)
        kw: dict[str, Any] = dict(device=x0.device, dtype=x0.dtype, generator=generator)
        s = torch.cat([f.time_sampler(hi - lo, f.path, **kw) for f, (lo, hi) in zip(self.matchers, blocks)])
        eps = torch.randn(x0.shape, **kw)
        x_t, u_t, t, interval, sig = [], [], [], [], []
        for k, (f, (lo, hi)) in enumerate(zip(self.matchers, blocks)):
            t_k, dt = float(self.times[k]), float(self.times[k + 1] - self.times[k])
            sk = s[lo:hi]
            if not f.path.is_stochastic:
                eps[lo:hi] = 0
            x_t.append(f.path.x_t(x0[lo:hi], x1[lo:hi], sk, eps[lo:hi]))
            u_t.append(f.path.u_t(x0[lo:hi], x1[lo:hi], sk, eps[lo:hi]) / dt)
            t.append(t_k + sk * dt)
            sig.append(f.path.sigma_t(sk))
            interval.append(torch.full((hi - lo,), k, dtype=torch.long, device=x0.device))
        return SnapshotPathSample(
            t=torch.cat(t),
            x_t=torch.cat(x_t),
            u_t=torch.cat(u_t),
            x0=x0,
            x1=x1,
            eps=eps,
            s=s,
            interval=torch.cat(interval),
            sigma_s=torch.cat(sig),
        )

    def losses(
        self,
        model: nn.Module,
        x0: Tensor,
        x1: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
    ) -> SnapshotLoss:
        """E ||v(t, x_t) - u_t||^2, plus E ||sigma_s s_theta(t, x_t) + eps||^2 for a model with a score
        when the matcher learns one (the [SF]2M term of :mod:`flowmatch.objectives.sf2m`)."""
        smp = self.sample(x0, x1, cond, generator=generator, pairing=pairing)
        flow = FlowMatcher.loss_from_sample(model, smp)
        score_fn = getattr(model, "score", None)
        if not (self.learns_score and callable(score_fn) and smp.sigma_s is not None):
            return SnapshotLoss(flow=flow, score=None, total=flow)
        sc = score_fn(smp.x_t, smp.t)
        score = torch.mean((pad_t(smp.sigma_s, smp.x_t) * sc + smp.eps) ** 2)
        return SnapshotLoss(flow=flow, score=score, total=flow + score)

    def loss(
        self,
        model: nn.Module,
        x0: Tensor,
        x1: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
    ) -> Tensor:
        """The total of :meth:`losses` (what :class:`flowmatch.training.trainer.Trainer` minimises)."""
        return self.losses(model, x0, x1, cond, generator=generator, pairing=pairing).total

    def __repr__(self) -> str:
        return f"SnapshotMatcher(name={self.name!r}, times={self.times.tolist()}, learns_score={self.learns_score})"
