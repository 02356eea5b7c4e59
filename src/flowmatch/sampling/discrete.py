"""The CTMC Euler sampler of discrete flow matching (Gat et al., "Discrete Flow Matching",
NeurIPS 2024, Section 4 and Algorithm 1).

From x_0 ~ p0 on the grid t_k = k / steps, each valid token of x_t jumps independently with the
Euler step of the probability velocity u_t(y | x_t) (a CTMC rate for y != x_t):

    P(x_{t+h}^i = y | x_t) = delta_{x_t^i}(y) + h u_t^i(y | x_t),
    u_t^i(y | x_t) = kappa_t' / (1 - kappa_t) (p_{1|t}(y | x_t) - delta_{x_t^i}(y)),

where the total jump probability h sum_{y != x_t^i} u_t^i(y) is clamped to 1 (the step is then a
draw from the normalised rates). The last step, to t = 1, draws each valid token from the
posterior p_{1|t} (or takes its argmax, ``final="argmax"``): kappa_1 = 1, so every token has
reached its target.

Options:

- ``corrector`` beta >= 0 adds a divergence-free term (Gat et al. 2024, Section 4.1, their
  corrector; Meta's flow_matching ``div_free`` has the same form with the weight
  kappa_t' / (kappa_t (1 - kappa_t)), which is infinite at both ends):
  beta kappa_t' (p_t(y | x_t) - delta_{x_t}(y)) with
  p_t(y | x_t) = kappa_t p_{1|t}(y | x_t) + (1 - kappa_t) p0(y), whose rates leave every
  conditional marginal p_t(. | x1) and hence p_t invariant (valid for an independent coupling,
  where p_t(. | x1) is the mixture). It lets tokens change again (re-masking, re-drawing); its
  weight kappa_t' stays finite at t = 1, so it adds no clamped steps at the end.
- classifier-free guidance on the rates (docs/CONVENTIONS.md): r = r_null + w (r_cond - r_null)
  for y != x_t, clamped at 0 (a rate cannot be negative); the last step draws from the guided
  posterior max(p_null + w (p_cond - p_null), 0), normalised.
- ``mask`` ``(B, L)`` bool: padded tokens (False) never move.

NFE: one evaluation of the (guided) posterior per step, ``steps`` in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_choice, check_nonnegative_float, check_positive_int
from flowmatch.data.conditioning import null_like
from flowmatch.paths.mixture import MixturePath, check_token_mask, check_tokens

__all__ = ["DiscreteSampleResult", "sample_discrete", "draw_categorical"]


@dataclass
class DiscreteSampleResult:
    """The sampler's end point x (B, L), its function evaluations and (when asked) the states at
    every grid time (steps + 1, B, L)."""

    x: Tensor
    nfe: int
    trajectory: Tensor | None = None


def draw_categorical(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row of ``probs`` (..., K) (non-negative, rows summing to 1) by inverting the CDF
    with one uniform per row from ``generator``."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[:-1], generator=generator, device=probs.device, dtype=probs.dtype)
    u = u * cdf[..., -1]  # rows that sum to 1 up to rounding
    idx = (cdf <= u[..., None]).sum(-1)
    return idx.clamp(max=probs.shape[-1] - 1)


def _posteriors(
    model: nn.Module, x: Tensor, t: Tensor, cond: Any, mask: Tensor | None, guidance: float | None, vocab: int
) -> tuple[Tensor, Tensor | None]:
    """p_{1|t} (B, L, V) for the condition, and the null condition's when guiding (one batch of 2B)."""
    extra = {} if mask is None else {"mask": mask}
    if guidance is None or cond is None:
        out = model(x, t, cond=cond, **extra)
        return _softmax(out, x, vocab), None
    b = x.shape[0]
    null: Tensor = null_like(cond)  # type: ignore[assignment]
    both = torch.cat([cond, null])
    extra2 = {} if mask is None else {"mask": torch.cat([mask, mask])}
    out = model(torch.cat([x, x]), torch.cat([t, t]), cond=both, **extra2)
    p = _softmax(out, torch.cat([x, x]), vocab)
    return p[:b], p[b:]


def _softmax(out: Any, x: Tensor, vocab: int) -> Tensor:
    if not isinstance(out, Tensor) or tuple(out.shape) != (*x.shape, vocab):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"a posterior model must return logits of shape {(*x.shape, vocab)} (B, L, V), got {shape}")
    return torch.softmax(out.double(), dim=-1)


@torch.no_grad()
def sample_discrete(
    model: nn.Module,
    path: MixturePath,
    x0: Tensor,
    *,
    steps: int = 64,
    cond: Any = None,
    mask: Tensor | None = None,
    guidance: float | None = None,
    corrector: float = 0.0,
    final: str = "sample",
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
) -> DiscreteSampleResult:
    """Integrate the CTMC of a posterior network from x0 (B, L) to t = 1 (see the module docstring).

    Args:
        model: the posterior network, ``model(x_t, t, cond=None[, mask=None]) -> logits (B, L, V)``.
        path: the mixture path it was trained on (vocabulary, source, kappa_t).
        x0: the start (B, L): a draw of ``path.sample_source``.
        steps: Euler steps (= NFE).
        cond: the condition (labels (B,)), or None.
        mask: the valid tokens (B, L) (padded ones stay as in x0).
        guidance: the classifier-free guidance scale w (None or no ``cond``: plain conditional).
        corrector: beta >= 0, the weight of the divergence-free term.
        final: ``"sample"`` or ``"argmax"``: how the last step reads the posterior.
        generator: the source of every draw.
    """
    steps = check_positive_int("steps", steps)
    corrector = check_nonnegative_float("corrector", corrector)
    check_choice("final", final, ("sample", "argmax"))
    if guidance is not None:
        guidance = check_nonnegative_float("guidance", guidance)
    x = check_tokens("x0", x0, path.num_states).clone()
    mask = check_token_mask(mask, x)
    vocab, states = path.vocab_size, path.num_states
    p0 = path.source_probs(x.device).double()
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    traj = [x.clone()] if return_trajectory else None
    b = x.shape[0]
    for k in range(steps):
        t, h = float(grid[k]), float(grid[k + 1] - grid[k])
        tt = torch.full((b,), t, device=x.device)
        p_cond, p_null = _posteriors(model, x, tt, cond, mask, guidance, vocab)
        if k == steps - 1:
            p = p_cond if p_null is None else (p_null + guidance * (p_cond - p_null)).clamp_min(0)  # type: ignore[operator]
            p = p / p.sum(-1, keepdim=True).clamp_min(1e-300)
            new = p.argmax(-1) if final == "argmax" else draw_categorical(p, generator)
        else:
            t64 = torch.tensor(t, dtype=torch.float64)
            kap = float(path.scheduler.kappa(t64))
            rate, d_kap = float(path.jump_rate(t64)), float(path.scheduler.d_kappa(t64))
            rates = _rates(p_cond, p0, kap, rate, corrector * d_kap, states)
            if p_null is not None:
                r_null = _rates(p_null, p0, kap, rate, corrector * d_kap, states)
                rates = r_null + guidance * (rates - r_null)  # type: ignore[operator]
            rates = rates.clamp_min(0).scatter(-1, x[..., None], 0.0)  # off-diagonal rates only
            jump = h * rates
            total = jump.sum(-1, keepdim=True)
            jump = torch.where(total > 1, jump / total.clamp_min(1e-300), jump)
            probs = jump.scatter(-1, x[..., None], (1 - jump.sum(-1, keepdim=True)).clamp_min(0))
            new = draw_categorical(probs, generator)
        x = new if mask is None else torch.where(mask, new, x)
        if traj is not None:
            traj.append(x.clone())
    return DiscreteSampleResult(x, steps, torch.stack(traj) if traj is not None else None)


def _rates(p1: Tensor, p0: Tensor, kappa: float, rate: float, corrector: float, states: int) -> Tensor:
    """Rates (B, L, S) towards each state (the diagonal is dropped by the caller):
    rate p_{1|t} + corrector (kappa p_{1|t} + (1 - kappa) p0)."""
    p = torch.nn.functional.pad(p1, (0, states - p1.shape[-1]))  # the mask token is never a target
    out = rate * p
    if corrector > 0:
        out = out + corrector * (kappa * p + (1 - kappa) * p0)
    return out
