"""SDE sampling for models that learned a velocity and a score (Schrödinger bridges, [SF]2M).

If v_t is the probability-flow velocity of a path of marginals p_t (d p_t/dt = -div(p_t v_t)) and
s_t = grad log p_t its score, then for any diffusion g the SDE

    dX_t = [ v_t(X_t) + (g^2 / 2) s_t(X_t) ] dt + g dW_t                                  (1)

has the same marginals p_t: its Fokker-Planck equation is
d p/dt = -div(p v) - (g^2/2) div(p grad log p) + (g^2/2) lap p = -div(p v).
With g = sigma, the diffusion of the reference Brownian motion, (1) is the Schrödinger bridge SDE
that SB-CFM / [SF]2M learn (Tong et al., "Simulation-free Schrödinger bridges via score and flow
matching", AISTATS 2024, Section 3, eq. (9)-(10) and Algorithm 1, with drift v + (g^2/2) s).
g = 0 gives back the probability-flow ODE. In reverse time (t_span[1] < t_span[0]) the process
is the time reversal of (1): the drift is v - (g^2 / 2) s for dt < 0 (Anderson 1982).

Scheme: Euler-Maruyama on the uniform grid t_k = t0 + k h, h = (t1 - t0) / steps,

    X_{k+1} = X_k + h [ v(t_k, X_k) + sign(h) (g^2/2) s(t_k, X_k) ] + g sqrt(|h|) Z_k,   Z_k ~ N(0, I),

strong order 1 for this additive noise (Milstein coincides with Euler-Maruyama when g is constant)
and weak order 1 (Kloeden & Platen 1992, Theorems 10.2.2 and 14.5.1).

Endpoints. Drift and score are evaluated at the left end t_k of every step (Itô), so never at
t_span[1]. By default (``last_step="ode"``) the final step is the deterministic probability-flow
Euler step X_K = X_{K-1} + h v(t_{K-1}, X_{K-1}): it moves the marginal the same way to first
order (the ODE and the SDE share marginals) but injects no fresh noise g sqrt(|h|) Z that no later
step could remove. With a sharp target (N(0, I) -> N(m1, 1e-4 I), sigma = 1, 100 steps, exact
fields) a stochastic last step ends with a spread of g sqrt(h) = 0.100, the deterministic one with
0.065 (tests/test_sde.py); for smooth targets the two agree. The score's training interval is the
path's ``t_range`` (e.g. [1e-3, 1 - 1e-3] for the Brownian bridge); the first step evaluates the
score at t_span[0] (t = 0 forward), where the marginal score of a smooth source is finite.
``last_step="sde"`` makes the last step an Euler-Maruyama step as well (the plain scheme, used for
convergence studies).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_nonnegative_float, check_positive_int
from flowmatch.models.contract import check_output
from flowmatch.sampling.inputs import check_sample_mask, check_t_span, check_x0, splits_with_rows
from flowmatch.sampling.ode import SampleResult

__all__ = ["sample_sde", "LAST_STEPS"]

#: Choices of ``sample_sde(last_step=...)``.
LAST_STEPS = ("ode", "sde")


def _call(fn: Callable[..., Tensor], x: Tensor, t: float, cond: Any, mask: Tensor | None, what: str) -> Tensor:
    tt = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
    if mask is None:
        return check_output(fn, fn(x, tt, cond=cond), x, what=f"{what} output")
    return check_output(fn, fn(x, tt, cond=cond, mask=mask), x, what=f"{what} output") * mask


def sample_sde(
    model: Callable[..., Tensor],
    x0: Tensor,
    *,
    sigma: float,
    steps: int = 100,
    generator: torch.Generator | None = None,
    t_span: Sequence[float] = (0.0, 1.0),
    cond: Any = None,
    return_trajectory: bool = False,
    chunk_size: int | None = None,
    last_step: str = "ode",
    noise: Tensor | None = None,
    mask: Tensor | None = None,
) -> SampleResult:
    """Integrate dX = [v(t, X) + (sigma^2/2) s(t, X)] dt + sigma dW by Euler-Maruyama (module doc).

    Args:
        model: ``model(x, t, cond=None)`` returns the velocity v and ``model.score(x, t, cond=None)``
            the score s = grad log p_t (e.g. :class:`flowmatch.models.FlowAndScore`); x is
            (B, *dims), t a (B,) tensor of x's dtype and device. sigma = 0 needs no score.
        x0: initial states at t_span[0], a finite floating tensor of shape (n, *dims).
        sigma: the diffusion g >= 0. For an SB-CFM model, the sigma it was trained with.
        steps: number of uniform steps; ``nfe`` counts one per velocity and one per score call.
        generator: torch.Generator (on x0's device) for the noise Z_k; one draw of shape
            (n, *dims) per stochastic step, in step order, so the same generator state gives the
            same samples, whatever ``chunk_size``.
        t_span: (t0, t1), distinct finite times; t1 < t0 runs the time-reversed SDE.
        cond: passed to the model; a tensor with n rows is split along with x0 when chunking.
        return_trajectory: also return the states at all ``steps + 1`` grid times.
        chunk_size: evaluate the networks on at most this many rows at a time (bounds memory);
            the noise is drawn for the whole batch, so results equal the unchunked ones.
        last_step: ``"ode"`` (default): the final step is a deterministic probability-flow
            Euler step without score or noise; ``"sde"``: an Euler-Maruyama step like the rest.
        noise: optional pre-drawn standard normal Z of shape (steps, n, *dims), used instead of
            ``generator`` (Z[k] drives step k; the last is unused with ``last_step="ode"``); for
            common random numbers across step sizes and convergence studies.
        mask: padded sequences (``(n, 1, T)`` or x0's shape, 1 = valid): passed to the networks
            as ``mask=``; the padding of x0, of the drift and of the noise is zeroed, so it stays 0.

    Returns:
        :class:`flowmatch.sampling.ode.SampleResult`: x (n, *dims), trajectory (steps + 1, n, *dims) or
        None, times (steps + 1,), nfe.

    Raises:
        ValueError: for a bad steps / sigma / t_span / chunk_size / last_step / noise, an x0 that
            is not a finite floating (n, *dims) tensor, or a model output of the wrong shape.
        TypeError: if model is not callable, sigma > 0 and it has no ``score`` method, or
            generator is not a torch.Generator.

    Example:
        >>> import torch, flowmatch
        >>> from flowmatch.trajectory.gaussian_bridge import GaussianBridge
        >>> gb = GaussianBridge(torch.zeros(2), torch.eye(2), torch.ones(2), torch.eye(2), sigma=1.0)
        >>> g = torch.Generator().manual_seed(0)
        >>> out = flowmatch.sample_sde(gb.as_model(), torch.randn(5000, 2, generator=g, dtype=torch.float64),
        ...                            sigma=1.0, steps=50, generator=g)
        >>> out.nfe, bool((out.x.mean(0) - 1).abs().max() < 0.1)
        (99, True)
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t, cond=None), got {type(model).__name__}")
    sigma = check_nonnegative_float("sigma", sigma)
    steps = check_positive_int("steps", steps)
    t0, t1 = check_t_span(t_span)
    check_choice("last_step", last_step, LAST_STEPS)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    x0 = check_x0(x0)
    if mask is not None:
        mask = check_sample_mask(mask, x0)
        x0 = x0 * mask
    score_fn: Any = getattr(model, "score", None)  # callable whenever sigma > 0, checked here
    if sigma > 0 and not callable(score_fn):
        raise TypeError(
            "sample_sde with sigma > 0 needs a model with a score method model.score(x, t, cond=None) "
            f"(e.g. flowmatch.models.FlowAndScore), got {type(model).__name__}"
        )
    n = x0.shape[0]
    if noise is not None:
        if not isinstance(noise, Tensor) or noise.shape != (steps, *x0.shape):
            got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
            raise ValueError(f"noise must have shape (steps, n, *dims) = {(steps, *x0.shape)}, got {got}")

    grid64 = torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
    grid = grid64.tolist()
    grid[0], grid[-1] = t0, t1
    times = grid64.to(dtype=x0.dtype, device=x0.device)
    split_cond = splits_with_rows(cond, n)
    bounds = [(0, n)] if chunk_size is None else [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    half_g2 = 0.5 * sigma**2
    nfe = 0

    x = x0
    states = [x0] if return_trajectory else None
    with torch.no_grad():
        for k in range(steps):
            t, h = grid[k], grid[k + 1] - grid[k]
            stochastic = sigma > 0 and not (k == steps - 1 and last_step == "ode")
            if stochastic:
                if noise is not None:
                    z = noise[k].to(dtype=x.dtype, device=x.device)
                else:
                    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                if mask is not None:
                    z = z * mask
            nfe += 2 if stochastic else 1
            pieces = []
            for lo, hi in bounds:
                xc = x if len(bounds) == 1 else x[lo:hi]
                cc = cond[lo:hi] if (split_cond and len(bounds) > 1) else cond
                mc = mask if (mask is None or len(bounds) == 1) else mask[lo:hi]
                drift = _call(model, xc, t, cc, mc, "model")
                if stochastic:
                    drift = drift + math.copysign(half_g2, h) * _call(score_fn, xc, t, cc, mc, "model.score")
                    zc = z if len(bounds) == 1 else z[lo:hi]
                    pieces.append(xc + h * drift + (sigma * math.sqrt(abs(h))) * zc)
                else:
                    pieces.append(xc + h * drift)
            x = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
            if states is not None:
                states.append(x)
    trajectory = torch.stack(states, dim=0) if states is not None else None
    return SampleResult(x=x, trajectory=trajectory, times=times, nfe=nfe)
