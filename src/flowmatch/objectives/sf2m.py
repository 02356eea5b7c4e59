"""Score and flow matching ([SF]2M): learn the velocity and the score of the marginal path together.

Tong et al., "Simulation-free Schrödinger bridges via score and flow matching" (AISTATS 2024),
Algorithm 1. For a Gaussian conditional path x_t = mu_t(x0, x1) + sigma_t eps, the score of the
conditional p_t(x | x0, x1) = N(mu_t, sigma_t^2 I) at x_t is

    grad log p_t(x_t | x0, x1) = -(x_t - mu_t) / sigma_t^2 = -eps / sigma_t,

and regressing a network s_theta(t, x) on it (denoising score matching, Vincent 2011) has the
marginal score grad log p_t(x) as minimiser, just as CFM's regression on u_t has the marginal
velocity. The loss implemented here is

    L = E || v_theta(t, x_t) - u_t ||^2  +  E || sigma_t s_theta(t, x_t) + eps ||^2
      = L_CFM + E [ lambda(t)^2 || s_theta(t, x_t) - grad log p_t(x_t | x0, x1) ||^2 ],  lambda(t) = sigma_t,

both terms averaged over the batch and the dimensions.

Weighting. lambda(t) = sigma_t is the weighting of Song et al. (ICLR 2021) (lambda^2 proportional
to the conditional variance). The [SF]2M reference code (TorchCFM's SB matcher, ``compute_lambda``)
uses lambda(t) = 2 sigma_t / sigma^2 and computes ``(lambda_t * s_net + eps)^2`` with a network
s_net that models (sigma^2 / 2) grad log p_t (the SDE's drift correction, added to v without a
factor): with s_net = (sigma^2 / 2) s, lambda_t s_net = sigma_t s, so that loss is exactly the one
above. Read as lambda(t)^2 ||s - grad log p_t(x | x0, x1)||^2 with s the score itself, the
2 sigma_t / sigma^2 weighting differs from ours only by the constant factor (2 / sigma^2)^2, which
rescales the score term against the flow term (immaterial for Adam when the two fields are
separate networks). Here the score network models grad log p_t itself, so the same network serves
an SDE of any diffusion.

Conditioning at the endpoints. The unweighted target -eps / sigma_t has variance d / sigma_t^2,
which diverges like 1 / (t (1 - t)) for the Brownian bridge (not even integrable over [0, 1]).
With the weight sigma_t the regression target is eps, of unit variance for every t; the per-sample
loss is bounded in t and its gradient with respect to s_theta, 2 sigma_t (sigma_t s_theta + eps),
vanishes as sigma_t -> 0 instead of blowing up. The time sampler still draws t from the path's
interval ``t_range`` (for the Brownian bridge (t_eps, 1 - t_eps), where u_t is finite).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from flowmatch.couplings import Coupling, Pairing
from flowmatch.data.conditioning import Condition
from flowmatch.data.masks import masked_mean
from flowmatch.objectives.cfm import FlowMatcher, PathSample
from flowmatch.paths import ProbabilityPath, pad_t

__all__ = ["SF2MLoss", "ScoreFlowMatcher", "score_loss_from_sample"]


def _has_score(model: object) -> bool:
    return callable(getattr(model, "score", None))


@dataclass
class SF2MLoss:
    """The two terms of the [SF]2M loss and their sum (scalar tensors; ``score`` is None when the
    model has no score head)."""

    flow: Tensor
    score: Tensor | None
    total: Tensor


def score_loss_from_sample(model: nn.Module, path: ProbabilityPath, s: PathSample) -> Tensor:
    """E || sigma_t s_theta(t, x_t) + eps ||^2 on a drawn :class:`PathSample` (mean over batch and dims).

    ``model.score(x, t, cond=None)`` must return the score of the marginal, shape (B, *dims) (with
    ``mask=`` for padded sequences, whose loss is the mean over ``s.loss_mask``).
    """
    score = cast(Any, model).score  # a method the model adds (nn.Module's attribute type says Tensor | Module)
    extra = {} if s.mask is None else {"mask": s.mask}
    sc = score(s.x_t, s.t, s.cond, **extra) if s.cond is not None else score(s.x_t, s.t, **extra)
    if not isinstance(sc, Tensor) or sc.shape != s.x_t.shape:
        got = tuple(sc.shape) if isinstance(sc, Tensor) else type(sc).__name__
        raise ValueError(f"model.score must return the shape of x {tuple(s.x_t.shape)}, got {got}")
    lam = pad_t(path.sigma_t(s.t), s.x_t)
    return masked_mean((lam * sc + s.eps) ** 2, s.loss_mask)


class ScoreFlowMatcher(FlowMatcher):
    """A :class:`FlowMatcher` whose loss adds the [SF]2M score term when the model has a score.

    ``loss(model, x0, x1)`` is the CFM loss for a plain velocity model and the sum of the CFM and
    the score-matching losses (module docstring) for a model with a ``score`` method, such as
    :class:`flowmatch.models.FlowAndScore`; both terms use the same pairs, times and noise.
    ``losses(...)`` returns the terms separately. Extra keyword arguments go to FlowMatcher.

    Example:
        >>> import torch
        >>> from flowmatch import methods
        >>> from flowmatch.models import MLP, FlowAndScore
        >>> sb = methods.get("sb-cfm", sigma=1.0)          # a ScoreFlowMatcher
        >>> model = FlowAndScore(MLP(2), MLP(2))
        >>> g = torch.Generator().manual_seed(0)
        >>> parts = sb.losses(model, torch.randn(64, 2), torch.randn(64, 2) + 3, generator=g)
        >>> bool(parts.total == parts.flow + parts.score)
        True
    """

    def __init__(
        self,
        path: ProbabilityPath,
        coupling: Coupling | None = None,
        time_sampler=None,
        *,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(path, coupling, time_sampler, name=name, **kwargs)
        if not path.is_stochastic:
            raise ValueError(f"score matching needs a stochastic path (sigma_t > 0 inside the interval), got {path!r}")

    def losses(
        self,
        model: nn.Module,
        x0: Tensor,
        x1: Tensor,
        cond: Condition | None = None,
        *,
        generator: torch.Generator | None = None,
        pairing: Pairing | None = None,
        mask: Tensor | None = None,
    ) -> SF2MLoss:
        """Flow and score terms of the loss on one draw of pairs, times and noise."""
        s = self.sample(x0, x1, cond, generator=generator, pairing=pairing, mask=mask)
        flow = self.loss_from_sample(model, s)
        if not _has_score(model):
            return SF2MLoss(flow=flow, score=None, total=flow)
        score = score_loss_from_sample(model, self.path, s)
        return SF2MLoss(flow=flow, score=score, total=flow + score)

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
        """E ||v_theta - u_t||^2 (+ E ||sigma_t s_theta + eps||^2 when the model has a score)."""
        return self.losses(model, x0, x1, cond, generator=generator, pairing=pairing, mask=mask).total

    def __repr__(self) -> str:
        return "Score" + super().__repr__()
