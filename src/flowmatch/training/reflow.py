"""Reflow: rectify a trained flow by retraining it on its own (x0, ODE(x0)) pairs.

Rectified flow (Liu, Gong & Liu, "Flow Straight and Fast: Learning to Generate and Transfer
Data with Rectified Flow", ICLR 2023, Algorithm 1). Given a velocity field v^k (the k-rectified
flow) and source samples x0 ~ q0, integrate

    dx/dt = v^k(x_t, t),  x_0 = x0,  t in [0, 1],    x1 := ODE_{v^k}(x0),

and train the (k+1)-rectified flow on the deterministic coupling (x0, x1) with the straight path
x_t = t x1 + (1 - t) x0 and target velocity u_t = x1 - x0 (method ``rf``: sigma = 0):

    v^{k+1} = argmin_v  E_{t ~ U[0, 1]} || v(x_t, t) - (x1 - x0) ||^2.

The new coupling has the same marginals (up to the ODE's and the fit's errors) and a transport
cost E||x1 - x0||^2 that does not increase (Liu et al., Theorem 3.5); its paths are straighter, so
few-step Euler sampling improves. The 1-rectified flow is an ``rf`` model trained on independent
pairs; the 2-rectified flow is one reflow of it.

Pieces:

- :func:`reflow_pairs` -- the pairs ``(x0, ODE(x0))`` with a chosen solver.
- :class:`PairedBatches` -- a batch source that keeps each pair together (the source and target
  views of the :class:`~flowmatch.training.trainer.Trainer` draw the same rows).
- :func:`train_on_pairs` -- train a copy of a model on fixed pairs.
- :func:`rectify` -- both steps: pairs from a parent model, then training on them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.objectives import methods
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.sampling.ode import sample
from flowmatch.training.trainer import Trainer, TrainerConfig, TrainResult

#: Solvers of flowmatch.sampling.ode that take a step count (the others are adaptive).
_FIXED_STEP_SOLVERS = ("euler", "midpoint", "heun", "rk4")

__all__ = ["ReflowPairs", "reflow_pairs", "PairedBatches", "ReflowResult", "train_on_pairs", "rectify"]


@dataclass
class ReflowPairs:
    """A deterministic coupling produced by a flow: ``x1[i] = ODE(x0[i])``.

    Attributes:
        x0: source points ``(N, *dims)``.
        x1: their images under the flow ``(N, *dims)``, on the device of ``x0``.
        nfe: model evaluations per trajectory of the solver that produced them.
        solver: the solver's name; ``steps`` its number of steps (fixed-step solvers) or None.
        atol, rtol: tolerances of an adaptive solver (None for fixed-step ones).
        cond: the condition each trajectory was integrated with ``(N, ...)`` (None: unconditional);
            it stays attached to its pair.
    """

    x0: Tensor
    x1: Tensor
    nfe: int
    solver: str
    steps: int | None
    atol: float | None = None
    rtol: float | None = None
    cond: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    def transport_cost(self) -> float:
        """Mean squared displacement ``E ||x1 - x0||^2`` of the coupling (float64)."""
        d = (self.x1.double() - self.x0.double()).reshape(len(self), -1)
        return float(d.pow(2).sum(-1).mean())


def reflow_pairs(
    model: nn.Module,
    x0: Tensor,
    *,
    solver: str = "dopri5",
    steps: int = 100,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    chunk_size: int | None = None,
    cond: Tensor | None = None,
) -> ReflowPairs:
    """The coupling ``(x0, ODE_model(x0))`` of Liu et al. (ICLR 2023, Algorithm 1, step 2).

    Integrates ``dx/dt = model(x, t)`` from t = 0 to t = 1 starting at every row of ``x0``
    (with :func:`flowmatch.sampling.ode.sample`, no gradients) and returns both ends.

    Args:
        model: velocity field ``model(x, t, cond=None)``; put in eval mode.
        x0: source samples ``(N, *dims)``.
        solver: any solver of :func:`flowmatch.ode_solvers`; the default adaptive dopri5 with
            tight tolerances keeps the pairs close to the exact flow.
        steps: number of steps of a fixed-step solver (ignored by adaptive ones).
        atol: absolute tolerance of an adaptive solver.
        rtol: relative tolerance of an adaptive solver.
        chunk_size: integrate at most this many rows at a time (memory bound).
        cond: one condition per row ``(N, ...)`` (e.g. class labels), passed to the model as
            ``cond=`` and split with ``x0`` when chunking: pairs of a conditional (or guided) flow.

    Returns:
        :class:`ReflowPairs` with ``x0`` (detached), ``x1`` and ``cond``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    model.eval()
    if cond is not None and (not isinstance(cond, Tensor) or cond.dim() < 1 or cond.shape[0] != x0.shape[0]):
        got = tuple(cond.shape) if isinstance(cond, Tensor) else type(cond).__name__
        raise ValueError(f"cond must hold one row per source row ({x0.shape[0]}), got {got}")
    res = sample(model, x0, solver=solver, steps=steps, atol=atol, rtol=rtol, chunk_size=chunk_size, cond=cond)
    fixed = solver in _FIXED_STEP_SOLVERS
    return ReflowPairs(
        x0=x0.detach(),
        x1=res.x.detach(),
        nfe=res.nfe,
        solver=solver,
        steps=steps if fixed else None,
        atol=None if fixed else atol,
        rtol=None if fixed else rtol,
        cond=None if cond is None else cond.detach(),
    )


class PairedBatches:
    """Random minibatches of fixed pairs ``(x0[i], x1[i])`` that never separate the two ends.

    The :class:`~flowmatch.training.trainer.Trainer` asks its ``source`` for ``n`` rows, then its ``target``
    for ``n`` rows, with the same generator, at every step. :attr:`source` draws ``n`` distinct
    row indices (a fresh uniform subset, as :class:`~flowmatch.data.batches.TensorBatches`) and
    returns those rows of ``x0``; :attr:`target` returns the same rows of ``x1``. Each source draw
    must be followed by exactly one target draw of the same size (a RuntimeError otherwise), so
    the k-th row of both batches is always a pair. Train with a matcher whose coupling is the
    identity (``rf``, ``i-cfm``): a coupling that re-pairs the batch would undo this.

    Calling the object itself returns both halves of one batch: ``x0b, x1b = batches(n, g)``.
    With ``cond`` (one row per pair) the target draws return ``(x1 rows, cond rows)``, the form
    the Trainer takes for conditional targets.
    """

    def __init__(self, x0: Tensor, x1: Tensor, *, name: str = "pairs", cond: Tensor | None = None):
        if not isinstance(x0, Tensor) or not isinstance(x1, Tensor):
            raise TypeError(f"x0 and x1 must be tensors, got {type(x0).__name__} and {type(x1).__name__}")
        if x0.dim() < 2 or x0.shape[0] == 0 or x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must be non-empty (N, *dims) tensors of the same shape, got "
                f"{tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        if x0.device != x1.device:
            raise ValueError(f"x0 and x1 must be on the same device, got {x0.device} and {x1.device}")
        if cond is not None and (not isinstance(cond, Tensor) or cond.dim() < 1 or cond.shape[0] != x0.shape[0]):
            got = tuple(cond.shape) if isinstance(cond, Tensor) else type(cond).__name__
            raise ValueError(f"cond must hold one row per pair ({x0.shape[0]}), got {got}")
        self.x0 = x0
        self.x1 = x1
        self.cond = None if cond is None else cond.to(x0.device)
        self.name = name
        self._pending: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    def check_batch_size(self, n: int) -> None:
        if n > len(self):
            raise ValueError(f"batch size must not exceed the {len(self)} {self.name}, got {n}")

    def _indices(self, n: int, generator: torch.Generator | None) -> Tensor:
        n = check_positive_int("batch size", n)
        self.check_batch_size(n)
        return torch.randperm(len(self), generator=generator, device=self.x0.device)[:n]

    def _draw_source(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if self._pending is not None:
            raise RuntimeError("PairedBatches: the previous source batch was never matched by a target draw")
        self._pending = self._indices(n, generator)
        return self.x0[self._pending]

    def _draw_target(self, n: int, generator: torch.Generator | None = None) -> Tensor | tuple[Tensor, Tensor]:
        idx, self._pending = self._pending, None
        if idx is None:
            raise RuntimeError("PairedBatches: a target batch was drawn before its source batch")
        if int(idx.shape[0]) != n:
            raise RuntimeError(
                f"PairedBatches: target batch size {n} differs from the source batch size {idx.shape[0]}"
            )
        if self.cond is not None:
            return self.x1[idx], self.cond[idx]
        return self.x1[idx]

    class _View:
        def __init__(self, owner: PairedBatches, draw):
            self._owner = owner
            self._draw = draw

        def check_batch_size(self, n: int) -> None:
            self._owner.check_batch_size(n)

        def __call__(self, n: int, generator: torch.Generator | None = None) -> Any:
            return self._draw(n, generator=generator)

    @property
    def source(self) -> PairedBatches._View:
        """Callable ``(n, generator) -> (n, *dims)`` rows of ``x0``; draws the batch's indices."""
        return PairedBatches._View(self, self._draw_source)

    @property
    def target(self) -> PairedBatches._View:
        """Callable ``(n, generator) -> (n, *dims)``: the ``x1`` partners of the last source batch."""
        return PairedBatches._View(self, self._draw_target)

    def __call__(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        idx = self._indices(n, generator)
        return self.x0[idx], self.x1[idx]


@dataclass
class ReflowResult:
    """A rectified model with its pairs and its training summary."""

    model: nn.Module
    pairs: ReflowPairs
    train: TrainResult


def train_on_pairs(
    model: nn.Module,
    pairs: ReflowPairs,
    config: TrainerConfig,
    *,
    matcher: FlowMatcher | None = None,
    device: str | torch.device = "cpu",
    run_dir: str | Path | None = None,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
) -> ReflowResult:
    """Train a deep copy of ``model`` on the fixed coupling ``pairs`` (the reflow step).

    Every step draws ``config.batch_size`` pairs with :class:`PairedBatches` and regresses
    ``v(x_t, t)`` on ``u_t = x1 - x0`` along ``x_t = t x1 + (1 - t) x0`` (Liu et al. ICLR 2023,
    Eq. 1), with the :class:`~flowmatch.training.trainer.Trainer` (AdamW, optional EMA, checkpoints in
    ``run_dir``). ``model`` itself is left untouched: pass the parent to warm-start from its
    weights (as Liu et al. do), or a freshly initialised network to train from scratch.

    Args:
        model: initial weights of the rectified model.
        pairs: the coupling, e.g. from :func:`reflow_pairs`.
        config: optimisation settings (steps, batch size <= len(pairs), lr, seed, ...).
        matcher: a FlowMatcher with an identity coupling; default ``methods.get("rf")``.
        device: as for :class:`~flowmatch.training.trainer.Trainer`.
        run_dir: as for :class:`~flowmatch.training.trainer.Trainer`.
        resume: as for :class:`~flowmatch.training.trainer.Trainer`.
        metadata: as for :class:`~flowmatch.training.trainer.Trainer`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(pairs, ReflowPairs):
        raise TypeError(f"pairs must be ReflowPairs, got {type(pairs).__name__}")
    objective = methods.get("rf") if matcher is None else matcher
    if not isinstance(objective, FlowMatcher):
        raise TypeError(f"matcher must be a FlowMatcher, got {type(objective).__name__}")
    matcher = objective
    if not matcher.coupling.is_identity:
        raise ValueError(
            f"training on fixed pairs needs a matcher whose coupling keeps the pairs (identity), "
            f"got {matcher.coupling!r}"
        )
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    cond = None if pairs.cond is None else pairs.cond.to(dev)
    batches = PairedBatches(pairs.x0.to(dev), pairs.x1.to(dev), cond=cond)
    trainer = Trainer(
        copy.deepcopy(model),
        matcher,
        batches.source,
        batches.target,
        config,
        run_dir=run_dir,
        device=device,
        metadata={"reflow": True, **(metadata or {})},
    )
    result = trainer.fit(resume=resume)
    return ReflowResult(model=trainer.sampling_model.eval(), pairs=pairs, train=result)


def rectify(
    parent: nn.Module,
    x0: Tensor,
    config: TrainerConfig,
    *,
    init: nn.Module | None = None,
    solver: str = "dopri5",
    steps: int = 100,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    device: str | torch.device = "cpu",
    run_dir: str | Path | None = None,
) -> ReflowResult:
    """One reflow: ``(x0, ODE_parent(x0))`` pairs, then training on them (Liu et al. 2023).

    Applied to a 1-rectified flow (``rf`` trained on independent pairs) this gives the
    2-rectified flow. The rectified model starts from a copy of ``init`` when given (e.g. a
    fresh network), else from a copy of ``parent``; ``parent`` is not modified.
    """
    pairs = reflow_pairs(parent, x0, solver=solver, steps=steps, atol=atol, rtol=rtol)
    return train_on_pairs(parent if init is None else init, pairs, config, device=device, run_dir=run_dir)
