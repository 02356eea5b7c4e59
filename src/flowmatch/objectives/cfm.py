"""FlowMatcher: coupling + probability path + time sampler -> regression targets and the CFM loss.

Conditional flow matching (Lipman et al. ICLR 2023; Tong et al. TMLR 2024, Algorithm 1/2):

    (x0, x1) ~ pi,  t ~ p(t),  eps ~ N(0, I),
    x_t = mu_t(x0, x1) + sigma_t eps,  u_t = d mu_t/dt + (d sigma_t/dt) eps,
    L(theta) = E || v_theta(t, x_t) - u_t ||^2.

The minimiser of L is the marginal velocity field that transports q0 to q1 along the marginal
path (Tong et al., Theorem 3.2), so integrating v_theta from t = 0 to 1 generates q1.

Padded sequences ``(B, C, T)`` take a ``mask`` (``(B, 1, T)``, 1 = valid frame,
:mod:`flowmatch.data.masks`) attached to x1's rows: it is reordered with x1 by the coupling
(which compares sources with the targets' valid frames only), zeroes x0, eps, x_t and u_t in the
padding, is passed to the model (``model(x, t, cond, mask=mask)``), and the loss is the mean of
the squared error over the valid elements only, sum(m (v - u)^2) / sum(m): a frame of a short
utterance weighs as much as a frame of a long one (Matcha-TTS), and padded frames get no gradient.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_probability
from flowmatch.couplings import Coupling, Independent, Pairing
from flowmatch.data.conditioning import Condition, drop_condition
from flowmatch.data.masks import check_mask, masked_mean
from flowmatch.models.contract import call_velocity
from flowmatch.objectives.targets import check_target_param, weighted_error
from flowmatch.objectives.time_samplers import UniformTime
from flowmatch.paths import ProbabilityPath

__all__ = ["PathSample", "UniformTime", "PairingOverride", "FlowMatcher"]


@dataclass
class PathSample:
    """One draw of the conditional path for a batch. Shapes: t (B,), the rest (B, *dims).

    x0, x1 are the paired endpoints (after the coupling); eps the Gaussian noise in x_t;
    cond the conditioning of each pair (or None), reordered along with x1; mask the valid
    elements of each pair (None: all valid), reordered along with x1. ``loss_mask`` is where the
    loss is taken (the mask, or for infilling the span within it; None: everywhere).
    """

    t: Tensor
    x_t: Tensor
    u_t: Tensor
    x0: Tensor
    x1: Tensor
    eps: Tensor
    cond: Condition | None = None
    mask: Tensor | None = None
    loss_mask: Tensor | None = None


def takes_condition(coupling: Coupling) -> bool:
    """Whether ``coupling(x0, x1, generator=..., cond=...)`` is accepted."""
    try:
        return "cond" in inspect.signature(coupling.__call__).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


class PairingOverride:
    """``use_pairing``: the Trainer hands an objective the pairing it solved ahead
    (:mod:`flowmatch.training.prefetch`); within the block the objective's ``sample`` reads it from
    ``_pairing_override`` instead of running its coupling (None: run it as usual)."""

    _pairing_override: Pairing | None = None

    @contextmanager
    def use_pairing(self, pairing: Pairing | None) -> Iterator[None]:
        previous = self._pairing_override
        self._pairing_override = pairing
        try:
            yield
        finally:
            self._pairing_override = previous


class FlowMatcher(PairingOverride):
    """Draws conditional path samples and computes the CFM loss.

    Args:
        path: the conditional probability path (:mod:`flowmatch.paths`).
        coupling: how x0 and x1 are paired (:mod:`flowmatch.couplings`); default independent.
        time_sampler: a callable ``(n, path, device=, dtype=, generator=) -> t`` (default
            :class:`UniformTime` over the path's interval).
        name: a label for logs (the method name when built by :func:`flowmatch.objectives.methods.get`).
        cond_dropout: probability p with which each pair's condition is replaced by the null
            condition (classifier-free guidance, Ho & Salimans 2022; see
            :mod:`flowmatch.data.conditioning` and :mod:`flowmatch.models.guidance`); 0 keeps every condition.
        target_param: what the network predicts: ``velocity`` (default), or on an affine Gaussian
            path from N(0, I) ``x1``, ``eps`` or ``score`` (:mod:`flowmatch.objectives.targets`;
            sample it through :class:`flowmatch.models.parametrization.AsVelocity`).
        loss_weighting: ``default`` or ``velocity`` (:mod:`flowmatch.objectives.targets`).

    Example:
        >>> import torch
        >>> from flowmatch import methods
        >>> fm = methods.get("ot-cfm", sigma=0.1)
        >>> x0, x1 = torch.randn(64, 2), torch.randn(64, 2) + 3
        >>> s = fm.sample(x0, x1, generator=torch.Generator().manual_seed(0))
        >>> s.x_t.shape, s.u_t.shape
        (torch.Size([64, 2]), torch.Size([64, 2]))
    """

    def __init__(
        self,
        path: ProbabilityPath,
        coupling: Coupling | None = None,
        time_sampler=None,
        *,
        name: str | None = None,
        cond_dropout: float = 0.0,
        target_param: str = "velocity",
        loss_weighting: str = "default",
    ):
        if not isinstance(path, ProbabilityPath):
            raise TypeError(f"path must be a ProbabilityPath, got {type(path).__name__}")
        coupling = Independent() if coupling is None else coupling
        if not isinstance(coupling, Coupling):
            raise TypeError(f"coupling must be a Coupling, got {type(coupling).__name__}")
        self.path = path
        self.coupling = coupling
        self.time_sampler = UniformTime() if time_sampler is None else time_sampler
        self.name = name or type(path).__name__
        self.cond_dropout = cond_dropout
        self.target_param, self.loss_weighting = check_target_param(target_param, path, loss_weighting)

    @property
    def cond_dropout(self) -> float:
        """Probability of replacing a pair's condition by the null condition (0: never)."""
        return self._cond_dropout

    @cond_dropout.setter
    def cond_dropout(self, p: float) -> None:
        self._cond_dropout = check_probability("cond_dropout", p)

    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        cond: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
        mask: Tensor | None = None,
    ) -> PathSample:
        """Pair the batches, draw t and eps, and return x_t with its target velocity u_t.

        x0 (B, *dims) from the source, x1 (B, *dims) from the target, cond (B, ...) attached to x1.
        The coupling runs first, then t, then eps, then (when there is a condition and
        ``cond_dropout > 0``) the condition-dropout draws: all from ``generator`` in that order. A
        coupling whose ``__call__`` takes ``cond`` (e.g. :class:`flowmatch.couplings.WithinLabels`)
        receives it, to pair only samples of equal condition. A precomputed ``pairing`` (e.g. from
        :meth:`prepare_pairing` run ahead in a worker, or set by :meth:`use_pairing`) replaces the
        coupling call. ``mask`` (padded sequences, module docstring) is attached to x1's rows.
        """
        if x0.shape != x1.shape:
            raise ValueError(
                f"x0 and x1 must have the same shape (B, *dims), got {tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        if cond is not None and cond.shape[0] != x1.shape[0]:
            raise ValueError(
                f"cond must have one row per sample, got {cond.shape[0]} rows for a batch of {x1.shape[0]}"
            )
        if mask is not None:
            mask = check_mask(mask, x1)
        if pairing is None:
            pairing = self._pairing_override
        if pairing is None and not self.coupling.is_identity:
            thunk = self._prepare(x0, x1, cond, generator, mask) if mask is not None else None
            if thunk is not None:
                pairing = thunk()
            elif cond is not None and takes_condition(self.coupling):
                coupling: Callable[..., Pairing] = self.coupling  # its __call__ takes cond
                pairing = coupling(x0, x1, generator=generator, cond=cond)
            else:
                pairing = self.coupling(x0, x1, generator=generator)
        if pairing is not None:
            x0, x1 = pairing.apply(x0, x1)
            if cond is not None:
                cond = cond[pairing.i1]
            if mask is not None:
                mask = mask[pairing.i1]
        t = self.time_sampler(x0.shape[0], self.path, device=x0.device, dtype=x0.dtype, generator=generator)
        if self.path.is_stochastic:
            eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        else:
            eps = torch.zeros_like(x0)
        if mask is not None:  # the padding is zero in every tensor of the path
            x0, x1, eps = x0 * mask, x1 * mask, eps * mask
        x_t = self.path.x_t(x0, x1, t, eps)
        u_t = self.path.u_t(x0, x1, t, eps)
        if mask is not None:
            x_t, u_t = x_t * mask, u_t * mask
        cond, loss_mask = self.extend_condition(x1, cond, mask, generator)
        if cond is not None and self.cond_dropout > 0:
            cond = drop_condition(cond, self.cond_dropout, generator=generator)
        return PathSample(t=t, x_t=x_t, u_t=u_t, x0=x0, x1=x1, eps=eps, cond=cond, mask=mask, loss_mask=loss_mask)

    def extend_condition(
        self, x1: Tensor, cond: Condition | None, mask: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Condition | None, Tensor | None]:
        """The condition the model sees and where the loss is taken, before condition dropout:
        here ``(cond, mask)``; the infilling objective adds the context and takes the span."""
        return cond, mask

    def loss(
        self,
        model: nn.Module,
        x0: Tensor,
        x1: Tensor,
        cond: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """CFM loss E ||v_theta(t, x_t) - u_t||^2, averaged over the batch and the dimensions (over
        the valid elements only, given a ``mask``)."""
        s = self.sample(x0, x1, cond, generator=generator, pairing=pairing, mask=mask)
        return self.regression_loss(model, s)

    def regression_loss(self, model: nn.Module, s: PathSample) -> Tensor:
        """The loss of ``model``'s prediction (of :attr:`target_param`) on a drawn :class:`PathSample`."""
        if self.target_param == "velocity":
            return self.loss_from_sample(model, s)
        pred = call_velocity(model, s.x_t, s.t, s.cond, s.mask)
        path: Any = self.path  # an AffinePath: check_target_param refused every other path
        err = weighted_error(pred, self.target_param, self.loss_weighting, path, s.t, s.x0, s.x1)
        return masked_mean(err, s.loss_mask)

    def prepare_pairing(
        self,
        x0: Tensor,
        x1: Tensor,
        cond: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Callable[[], Pairing] | None:
        """The coupling's draws now, its work later: :meth:`Coupling.prepare` as :meth:`sample` calls it.

        Returns None for the identity coupling, else a thunk (safe to run in another thread) whose
        pairing, passed to :meth:`sample`, gives what ``sample(x0, x1, cond, generator=g)`` gives
        with the coupling's draws taken from ``g`` here.
        """
        return self._prepare(x0, x1, cond, generator, None if mask is None else check_mask(mask, x1))

    def _prepare(
        self, x0: Tensor, x1: Tensor, cond: Condition | None, generator: torch.Generator | None, mask: Tensor | None
    ) -> Callable[[], Pairing] | None:
        """:meth:`prepare_pairing` with ``mask`` already checked (:meth:`sample` checks it once)."""
        if self.coupling.is_identity:
            return None
        extra: dict[str, Any] = {}
        if mask is not None:
            self.coupling.check_mask_support(mask)
            extra["mask"] = mask
        if cond is not None and takes_condition(self.coupling):
            extra["cond"] = cond
        return self.coupling.prepare(x0, x1, generator=generator, **extra)

    @staticmethod
    def loss_from_sample(model: nn.Module, s: PathSample) -> Tensor:
        """The regression loss on an already drawn :class:`PathSample` (over ``s.loss_mask``)."""
        v = call_velocity(model, s.x_t, s.t, s.cond, s.mask)
        return masked_mean((v - s.u_t) ** 2, s.loss_mask)

    def __repr__(self) -> str:
        extra = "" if self.target_param == "velocity" else f", target_param={self.target_param!r}"
        return (
            f"FlowMatcher(name={self.name!r}, path={self.path!r}, coupling={self.coupling!r}, "
            f"time_sampler={self.time_sampler!r}{extra})"
        )
