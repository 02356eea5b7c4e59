"""Discrete flow matching: the posterior (x1-prediction) objective of a mixture path over tokens
(Gat et al., "Discrete Flow Matching", NeurIPS 2024; Shaul et al., "Flow Matching with General
Discrete Paths: A Kinetic-Optimal Perspective", ICLR 2025, for the generalised KL).

The network is a posterior p_{1|t}(. | x_t) = softmax(model(x_t, t, cond, mask)), logits
``(B, L, V)`` over the data tokens, for x_t ``(B, L)`` over the path's S states (the mask token
included). One step: pair (x0, x1) by the coupling, draw t ~ U[0, t_max), x_t ~ p_t(. | x0, x1)
(:class:`flowmatch.paths.mixture.MixturePath`), and minimise, over the valid tokens,

- ``loss="ce"`` (Gat et al. 2024, Eq. 28): -log p_{1|t}(x1^i | x_t);
- ``loss="gkl"`` (Shaul et al. 2025; the ELBO of the CTMC):
  -kappa_t' / (1 - kappa_t) [p_{1|t}(x_t^i | x_t) - delta_{x1^i}(x_t^i)
  + (1 - delta_{x1^i}(x_t^i)) log p_{1|t}(x1^i | x_t)].

Both are minimised, for each x_t, by the true posterior p(x1^i | x_t) (for the generalised KL the
stationarity condition on the simplex gives p(y) = q(y) for y != x_t^i, and the rest follows), so
the sampler :func:`flowmatch.sampling.discrete.sample_discrete` can use the network in the
probability velocity. The weight kappa_t' / (1 - kappa_t) of the generalised KL is infinite at
t = 1: t is drawn from [0, t_max) with t_max = 1 - 1e-3 by default (Meta's flow_matching examples
use the same margin).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_choice, check_probability
from flowmatch.couplings import Coupling, Independent, Pairing
from flowmatch.data.conditioning import drop_condition
from flowmatch.objectives.cfm import PairingOverride, takes_condition
from flowmatch.paths.mixture import MixturePath, MixtureSample, check_token_mask, check_tokens

__all__ = [
    "DiscreteFlowMatcher",
    "DISCRETE_LOSSES",
    "DISCRETE_METHODS",
    "call_posterior",
    "posterior_loss",
    "posterior_token_loss",
    "discrete_method",
]

DISCRETE_LOSSES = ("ce", "gkl")


def call_posterior(model: Callable[..., Any], x: Tensor, t: Tensor, cond: Any, mask: Tensor | None, vocab: int):
    """``model(x, t, cond=cond[, mask=mask])``, checked to return logits ``(B, L, vocab)``."""
    extra = {} if mask is None else {"mask": mask}
    out = model(x, t, cond=cond, **extra)
    if not isinstance(out, Tensor) or tuple(out.shape) != (*x.shape, vocab):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"a posterior model must return logits of shape {(*x.shape, vocab)} (B, L, V), got {shape}")
    return out


def posterior_token_loss(logits: Tensor, x1: Tensor, x_t: Tensor, t: Tensor, path: MixturePath, loss: str) -> Tensor:
    """The loss of every token (B, L) (see the module docstring), for logits (B, L, V)."""
    check_choice("discrete loss", loss, DISCRETE_LOSSES)
    log_p = torch.log_softmax(logits.float(), dim=-1)
    log_p_x1 = log_p.gather(-1, x1[..., None]).squeeze(-1)
    if loss == "ce":
        per_token = -log_p_x1
    else:
        rate = path.jump_rate(t).to(log_p.dtype)[:, None]
        same = (x_t == x1).to(log_p.dtype)
        in_vocab = x_t.clamp(max=path.vocab_size - 1)  # the mask token has posterior 0
        p_xt = log_p.exp().gather(-1, in_vocab[..., None]).squeeze(-1) * (x_t < path.vocab_size)
        per_token = -rate * (p_xt - same + (1 - same) * log_p_x1)
    return per_token


def posterior_loss(
    logits: Tensor, x1: Tensor, x_t: Tensor, t: Tensor, path: MixturePath, loss: str, mask: Tensor | None = None
) -> Tensor:
    """:func:`posterior_token_loss` averaged over the valid tokens (``mask`` (B, L), None: all)."""
    per_token = posterior_token_loss(logits, x1, x_t, t, path, loss)
    if mask is None:
        return per_token.mean()
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / m.sum().clamp_min(1.0)


class DiscreteFlowMatcher(PairingOverride):
    """Pairs token batches, draws the mixture path and computes the posterior loss.

    Args:
        path: the :class:`~flowmatch.paths.mixture.MixturePath` (vocabulary, source, kappa_t).
        coupling: how x0 and x1 are paired (default independent;
            :class:`~flowmatch.couplings.hamming.HammingOT` for OT by Hamming cost).
        loss: ``"ce"`` (cross-entropy) or ``"gkl"`` (generalised KL).
        t_max: t ~ U[0, t_max) (< 1 so that the generalised KL's weight is finite).
        cond_dropout: probability of training a row with the null condition (classifier-free guidance).
        name: a label for logs.

    Example:
        >>> import torch
        >>> from flowmatch.paths.mixture import MixturePath
        >>> fm = DiscreteFlowMatcher(MixturePath(3, "uniform"))
        >>> net = lambda x, t, cond=None: torch.zeros(*x.shape, 3)
        >>> x1 = torch.randint(0, 3, (8, 5))
        >>> x0 = fm.path.sample_source(x1, generator=torch.Generator().manual_seed(0))
        >>> round(float(fm.loss(net, x0, x1, generator=torch.Generator().manual_seed(0))), 4)  # log 3
        1.0986
    """

    def __init__(
        self,
        path: MixturePath,
        coupling: Coupling | None = None,
        *,
        loss: str = "ce",
        t_max: float = 1.0 - 1e-3,
        cond_dropout: float = 0.0,
        name: str = "dfm",
    ):
        if not isinstance(path, MixturePath):
            raise TypeError(f"path must be a MixturePath, got {type(path).__name__}")
        coupling = Independent() if coupling is None else coupling
        if not isinstance(coupling, Coupling):
            raise TypeError(f"coupling must be a Coupling, got {type(coupling).__name__}")
        self.path = path
        self.coupling = coupling
        self.loss_kind = check_choice("discrete loss", loss, DISCRETE_LOSSES)
        t_max = check_probability("t_max", t_max)
        if t_max == 0 or (t_max == 1.0 and self.loss_kind == "gkl"):
            raise ValueError(f"t_max must be in (0, 1) for the generalised KL and in (0, 1] for ce, got {t_max}")
        self.t_max = t_max
        self.cond_dropout = check_probability("cond_dropout", cond_dropout)
        self.name = name

    def prepare_pairing(
        self,
        x0: Tensor,
        x1: Tensor,
        cond: Any = None,
        *,
        generator: torch.Generator | None = None,
        mask: Tensor | None = None,
    ) -> Callable[[], Pairing] | None:
        """The coupling's draws now, its solve later (None for the identity coupling); see
        :meth:`flowmatch.objectives.cfm.FlowMatcher.prepare_pairing`."""
        if self.coupling.is_identity:
            return None
        extra: dict[str, Any] = {}
        if mask is not None:
            extra["mask"] = check_token_mask(mask, x1)
        if cond is not None and takes_condition(self.coupling):
            extra["cond"] = cond
        return self.coupling.prepare(x0, x1, generator=generator, **extra)

    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        cond: Any = None,
        *,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
    ) -> tuple[MixtureSample, Any]:
        """Pair, then draw t ~ U[0, t_max) and x_t; returns the path sample and the (paired,
        dropped-out) condition. The draws, in order: t, the per-token jumps, the condition dropout."""
        x1 = check_tokens("x1", x1, self.path.vocab_size)
        x0 = check_tokens("x0", x0, self.path.num_states)
        mask = check_token_mask(mask, x1)
        if pairing is None:
            pairing = self._pairing_override
        if pairing is None and not self.coupling.is_identity:
            thunk = self.prepare_pairing(x0, x1, cond, generator=generator, mask=mask)
            pairing = thunk() if thunk is not None else None
        if pairing is not None:
            x0, x1 = pairing.apply(x0, x1)
            cond = cond[pairing.i1] if cond is not None else None
            mask = mask[pairing.i1] if mask is not None else None
        t = torch.rand(x1.shape[0], generator=generator, device=x1.device) * self.t_max
        s = self.path.sample(x0, x1, t, mask=mask, generator=generator)
        if cond is not None and self.cond_dropout > 0:
            cond = drop_condition(cond, self.cond_dropout, generator=generator)
        return s, cond

    def loss(
        self,
        model: nn.Module,
        x0: Tensor,
        x1: Tensor,
        cond: Any = None,
        *,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
    ) -> Tensor:
        """The posterior loss of one batch (mean over the valid tokens)."""
        s, cond = self.sample(x0, x1, cond, mask=mask, generator=generator, pairing=pairing)
        logits = call_posterior(model, s.x_t, s.t, cond, s.mask, self.path.vocab_size)
        return posterior_loss(logits, s.x1, s.x_t, s.t, self.path, self.loss_kind, s.mask)

    def __repr__(self) -> str:
        return (
            f"DiscreteFlowMatcher(name={self.name!r}, path={self.path!r}, coupling={self.coupling!r}, "
            f"loss={self.loss_kind!r})"
        )


#: The discrete methods of :mod:`flowmatch.objectives.methods` and their couplings.
DISCRETE_METHODS = ("dfm", "ot-dfm")


def discrete_method(
    name: str, path: MixturePath, *, loss: str = "ce", cond_dropout: float = 0.0
) -> DiscreteFlowMatcher:
    """The objective of a named discrete method on ``path``: ``dfm`` (independent coupling, Gat et
    al. 2024) or ``ot-dfm`` (exact minibatch OT by Hamming cost,
    :class:`~flowmatch.couplings.hamming.HammingOT`)."""
    from flowmatch.couplings.hamming import HammingOT

    check_choice("discrete method", name, DISCRETE_METHODS)
    coupling: Coupling = HammingOT() if name == "ot-dfm" else Independent()
    return DiscreteFlowMatcher(path, coupling, loss=loss, cond_dropout=cond_dropout, name=name)
