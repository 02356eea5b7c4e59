"""Drawing pairs from a transport plan that is not a permutation (``sampling=`` of the entropic
and unbalanced couplings).

- ``"rows"`` -- each x0_i draws x1_j with probability P_ij / sum_j P_ij, independently (with
  replacement across rows). Keeps the x0 marginal exactly (each x0 once) and the conditional
  P(j | i); the x1 marginal only in expectation (repeated x1, about 63% distinct for a product plan).
- ``"sequential"`` -- rows in a uniformly random order, each draws from P(j | i) restricted to the
  columns not yet used (Gumbel-max with a used-column mask). A permutation: both batch marginals
  exact, every pair distinct; the first row follows P(j | i) exactly, later rows a renormalised
  restriction of it.
- ``"gumbel"`` -- perturb-and-MAP (Papandreou & Yuille 2011): the permutation maximising
  sum_i log P_is(i) + G_is(i) with iid Gumbel G (solved exactly by :mod:`flowmatch.ot.assignment`).
  Both batch marginals exact; exact at the two limits (a sharp plan gives the OT permutation, the
  product plan a uniformly random permutation). For a Sinkhorn plan, log P_ij = (f_i + g_j -
  C_ij) / eps + const, so this is exact OT of the Gumbel-perturbed cost C - eps G.
- ``"round"`` -- the permutation of maximum sum_i log P_is(i) (deterministic). For a Sinkhorn plan
  that is exactly the OT permutation, whatever eps (same identity as above).
- ``"joint"`` -- n pairs drawn iid from P / sum P over all (i, j) (as TorchCFM does); the
  natural choice for an unbalanced plan, whose row masses differ.

The random numbers are drawn first (:func:`draw_sampling_noise`, in the caller's thread) and
consumed by :func:`pairs_from_plan`, which draws nothing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice
from flowmatch.ot.assignment import solve_assignment

__all__ = ["SAMPLINGS", "draw_sampling_noise", "pairs_from_plan"]

#: How pairs are drawn from a plan that is not a permutation (see the module docstring).
SAMPLINGS = ("rows", "sequential", "gumbel", "round", "joint")


def _gumbel(shape, generator) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp(1e-300, 1.0 - 1e-16)))


def draw_sampling_noise(sampling: str, n: int, m: int, generator) -> tuple | None:
    """Random numbers for :func:`pairs_from_plan`, drawn on the CPU in float64."""
    if sampling in ("rows", "joint"):
        return (torch.rand(n, generator=generator, dtype=torch.float64),)
    if sampling == "sequential":
        return torch.randperm(n, generator=generator), _gumbel((n, m), generator)
    if sampling == "gumbel":
        return (_gumbel((n, m), generator),)
    return None


def pairs_from_plan(log_plan: Tensor, sampling: str, noise: tuple[Tensor, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Indices (i0, i1) of pairs drawn from a plan given by its log (n, m), CPU, float64.

    ``sampling`` is one of :data:`SAMPLINGS` (see the module docstring for what each preserves);
    ``noise`` holds the random numbers it needs (uniforms for rows/joint, a row order and Gumbels
    for sequential, Gumbels for gumbel; None for round), so the function itself draws nothing.
    sequential, gumbel and round need n <= m (and n == m for gumbel and round).
    """
    check_choice("sampling", sampling, SAMPLINGS)
    lp = log_plan.detach().cpu().double()
    lp = torch.where(torch.isfinite(lp), lp, torch.full_like(lp, -745.0))  # log of a zero entry
    n, m = lp.shape
    drawn: tuple[Tensor, ...] = noise if noise is not None else ()  # round draws nothing
    if sampling == "rows":
        (u,) = drawn
        probs = torch.softmax(lp, dim=1)
        cdf = torch.cumsum(probs, dim=1)
        i1 = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).squeeze(1).clamp_max(m - 1)
        return torch.arange(n), i1
    if sampling == "joint":
        (u,) = drawn
        probs = torch.softmax(lp.reshape(-1), dim=0)
        cdf = torch.cumsum(probs, dim=0)
        flat = torch.searchsorted(cdf, u * cdf[-1]).clamp_max(n * m - 1)
        return flat // m, flat % m
    if n > m or (sampling in ("gumbel", "round") and n != m):
        raise ValueError(f"sampling={sampling!r} needs n <= m (n == m for gumbel/round), got {n} and {m}")
    if sampling == "sequential":
        order, g = drawn
        scores = (lp + g).numpy().copy()
        picked = np.empty(n, dtype=np.int64)
        for i in order.tolist():
            j = int(np.argmax(scores[i]))
            picked[i] = j
            scores[:, j] = -np.inf
        return torch.arange(n), torch.from_numpy(picked)
    score = lp + drawn[0] if sampling == "gumbel" else lp
    perm = solve_assignment((-score).numpy()).perm
    return torch.arange(n), torch.from_numpy(perm)
