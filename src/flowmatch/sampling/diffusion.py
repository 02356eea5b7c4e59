"""Stochastic samplers of affine Gaussian paths: DDIM / DDPM steps and the churn family of SDEs.

On an affine path x_t = alpha_t x1 + sigma_t eps, eps ~ N(0, I) (:mod:`flowmatch.paths.schedulers`),
a network predicting the velocity, x1, eps or the score (:mod:`flowmatch.paths.conversions`) gives
the probability-flow velocity v, the score s = -E[eps | x_t] / sigma_t and the path's diffusion
g_t^2 = 2 sigma_t D_t / alpha_t, D_t = alpha_t' sigma_t - sigma_t' alpha_t. For every churn
eta >= 0 the SDE

    dx = [v + (eta^2 g^2 / 2) s] dt + eta g dW,    t from t0 to t1 > t0,                   (1)

has the marginals p_t of the path: its Fokker-Planck equation is that of the probability-flow ODE
dx/dt = v (the diffusion term (eta^2 g^2 / 2) lap p cancels the score drift's
-(eta^2 g^2 / 2) div(p grad log p)), as in :mod:`flowmatch.sampling.sde`. eta = 0 is the
probability-flow ODE; eta = 1 is the reverse-time diffusion SDE of Song et al. (ICLR 2021,
eq. 6), dx = [f - g^2 s] dtau + g dw_bar in diffusion time tau = 1 - t, with
f = (alpha' / alpha) x (so that v = f + (g^2 / 2) s); eta > 1 churns more than the diffusion.

Solvers
-------
``"ddim"``: the generalised DDIM step from t to t' > t for any affine scheduler (Song, Meng &
Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. 12 and 16): with (x1_hat, eps_hat)
predicted at (x_t, t),

    x_{t'} = alpha_{t'} x1_hat + sqrt(sigma_{t'}^2 - c^2) eps_hat + c z,    z ~ N(0, I),
    c = eta (sigma_{t'} / sigma_t) sqrt(max(0, sigma_t^2 - (alpha_t / alpha_{t'})^2 sigma_{t'}^2)),

clamped to c <= sigma_{t'}. c^2 at eta = 1 is the variance of the Gaussian posterior
q(x_{t'} | x_t, x1) of the path's Markov forward process, so eta = 1 is DDPM's ancestral step
(Ho, Jain & Abbeel, NeurIPS 2020, eq. 6-7) and eta = 0 deterministic DDIM; for VP schedulers c is
DDIM's sigma_tau(eta). For small steps c^2 ~ eta^2 g^2 (t' - t), so the steps solve (1). The step
needs no alpha_t > 0: it starts at t = 0 whenever converting the parametrisation to (x1, eps) is
regular there (:func:`flowmatch.paths.conversions.check_regular`: velocity and x1 are, eps and
score are not where alpha_0 = 0). The last step to t' = 1 (sigma_1 = 0) returns alpha_1 x1_hat.

``"euler-maruyama"``: Euler-Maruyama of (1) on the uniform grid,

    x_{k+1} = x_k + h [v + (eta^2 g^2 / 2) s](t_k, x_k) + eta g_{t_k} sqrt(h) z_k,

with the last step the deterministic probability-flow Euler step x + h v (as ``last_step="ode"``
of :func:`flowmatch.sample_sde`: no fresh noise that no later step could remove). g^2 diverges
where alpha = 0, so with eta > 0 it needs alpha_{t0} > 0 (start at t0 > 0 or use ``"ddim"``), and
it needs h eta^2 g^2 small near t0 (many steps, or a later t0).

Neither solver evaluates the model at t = 1, where eps and the score are not identified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_nonnegative_float, check_positive_int
from flowmatch.models.contract import call_velocity
from flowmatch.paths.conversions import PARAMETRIZATIONS, check_regular, to_x1_eps
from flowmatch.paths.schedulers import Scheduler
from flowmatch.sampling.inputs import check_sample_mask, check_t_span, check_x0
from flowmatch.sampling.ode import SampleResult

__all__ = ["sample_diffusion", "ddim_noise_scale", "DIFFUSION_SOLVERS"]

#: Choices of ``sample_diffusion(solver=...)``.
DIFFUSION_SOLVERS = ("ddim", "euler-maruyama")


def ddim_noise_scale(churn: float, alpha: float, sigma: float, alpha_next: float, sigma_next: float) -> float:
    """The noise scale c of the generalised DDIM step from t to t' > t (module docstring).

    c = eta (sigma' / sigma) sqrt(max(0, sigma^2 - (alpha / alpha')^2 sigma'^2)), clamped to
    [0, sigma']; eta = 1 is the standard deviation of DDPM's posterior q(x_{t'} | x_t, x1).

    Args:
        churn: eta >= 0.
        alpha: alpha_t.
        sigma: sigma_t (> 0).
        alpha_next: alpha_{t'}.
        sigma_next: sigma_{t'}.

    Returns:
        c as a float.

    Example:
        >>> ddim_noise_scale(1.0, 0.0, 1.0, 0.5, 0.5)  # from pure noise: all fresh noise
        0.5
    """
    if churn == 0 or sigma_next == 0:
        return 0.0
    ratio = alpha / alpha_next if alpha_next != 0 else 0.0
    var = max(0.0, sigma * sigma - (ratio * sigma_next) ** 2)
    return min(churn * (sigma_next / sigma) * math.sqrt(var), sigma_next)


def _check_noise(noise: Any, steps: int, x0: Tensor) -> None:
    if noise is not None and (not isinstance(noise, Tensor) or noise.shape != (steps, *x0.shape)):
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must have shape (steps, n, *dims) = {(steps, *x0.shape)}, got {got}")


def _check_start(scheduler: Scheduler, param: str, solver: str, churn: float, t0: float, alpha0: float) -> None:
    check_regular(scheduler, param, t0)
    if solver == "euler-maruyama" and churn > 0 and alpha0 == 0:
        raise ValueError(
            f"solver='euler-maruyama' with churn > 0 needs alpha_t0 > 0 (g^2 = 2 sigma D / alpha diverges), "
            f"got alpha = 0 at t0 = {t0}; use solver='ddim' or start at t0 > 0"
        )


def sample_diffusion(
    model: Callable[..., Tensor],
    x0: Tensor,
    scheduler: Scheduler,
    *,
    param: str = "velocity",
    churn: float = 1.0,
    solver: str = "ddim",
    steps: int = 100,
    t_span: Sequence[float] = (0.0, 1.0),
    cond: Any = None,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    return_trajectory: bool = False,
) -> SampleResult:
    """Sample the path of ``scheduler`` with the churn SDE dx = [v + (eta^2 g^2/2) s] dt + eta g dW.

    The solvers, the DDIM / DDPM step and the SDE are in the module docstring: churn 0 is the
    probability-flow ODE (deterministic DDIM), churn 1 the reverse-time diffusion SDE (DDPM's
    ancestral sampling with ``"ddim"``); every churn has the path's marginals.

    Args:
        model: the network, ``model(x, t, cond=None)`` (``mask=`` too with a mask) with x of shape
            (B, *dims) and t a (B,) tensor; returns a (B, *dims) prediction of ``param``.
        x0: initial states at t_span[0], a finite floating tensor of shape (n, *dims) (for
            t0 = 0 the source N(0, I); else draws of the path's marginal at t0).
        scheduler: the path's :class:`flowmatch.paths.schedulers.Scheduler` the model was
            trained on.
        param: what the model predicts: ``"velocity"``, ``"x1"``, ``"eps"`` or ``"score"``.
        churn: eta >= 0, the multiple of the path's diffusion g injected per unit time.
        solver: ``"ddim"`` or ``"euler-maruyama"``.
        steps: number of uniform steps on [t0, t1]; ``nfe = steps`` (one model call per step).
        t_span: (t0, t1) with 0 <= t0 < t1 <= 1 (forward time only).
        cond: conditioning passed to the model.
        mask: padded sequences (``(n, 1, T)`` or x0's shape, 1 = valid): passed to the model as
            ``mask=``; the padding of x0, of the prediction and of the noise is zeroed, so it
            stays exactly 0.
        generator: torch.Generator (on x0's device) for the noise: one draw of x0's shape per
            stochastic step, in step order (a ``"ddim"`` step with c > 0; every
            ``"euler-maruyama"`` step but the last, when churn > 0), so the same generator state
            gives the same samples.
        noise: optional pre-drawn standard normal z of shape (steps, n, *dims) used instead of
            ``generator``; z[k] drives step k (unused where the step is deterministic).
        return_trajectory: also return the states at all ``steps + 1`` grid times.

    Returns:
        :class:`flowmatch.sampling.ode.SampleResult`: x (n, *dims), trajectory (steps + 1, n, *dims)
        or None, times (steps + 1,), nfe = steps.

    Raises:
        ValueError: for an unknown param or solver, a negative churn, non-positive steps, a
            t_span outside 0 <= t0 < t1 <= 1, a start where ``param`` is singular (or alpha_t0 = 0
            for Euler-Maruyama with churn > 0), a bad x0 / mask / noise, or a model output of the
            wrong shape.
        TypeError: if model is not callable, scheduler not a Scheduler or generator not a
            torch.Generator.

    Example:
        >>> import torch
        >>> from flowmatch.paths.schedulers import CondOTScheduler
        >>> x1_model = lambda x, t, cond=None: torch.ones_like(x)  # data: the point 1
        >>> g = torch.Generator().manual_seed(0)
        >>> out = sample_diffusion(x1_model, torch.randn(4, 2, generator=g), CondOTScheduler(),
        ...                        param="x1", steps=10, generator=g)
        >>> out.nfe, bool(torch.allclose(out.x, torch.ones(4, 2)))
        (10, True)
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t, cond=None), got {type(model).__name__}")
    if not isinstance(scheduler, Scheduler):
        raise TypeError(f"scheduler must be a flowmatch.paths.schedulers.Scheduler, got {type(scheduler).__name__}")
    param = check_choice("param", param, PARAMETRIZATIONS)
    churn = check_nonnegative_float("churn", churn)
    solver = check_choice("solver", solver, DIFFUSION_SOLVERS)
    steps = check_positive_int("steps", steps)
    t0, t1 = check_t_span(t_span)
    if not 0.0 <= t0 < t1 <= 1.0:
        raise ValueError(f"t_span must satisfy 0 <= t0 < t1 <= 1 (forward time on the path), got {tuple(t_span)!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    x0 = check_x0(x0)
    if mask is not None:
        mask = check_sample_mask(mask, x0)
        x0 = x0 * mask
    _check_noise(noise, steps, x0)

    grid64 = torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
    grid64[0], grid64[-1] = t0, t1
    grid = grid64.tolist()
    sched = scheduler(grid64)
    alpha, sigma = sched.alpha.tolist(), sched.sigma.tolist()
    d_alpha, d_sigma = sched.d_alpha.tolist(), sched.d_sigma.tolist()
    _check_start(scheduler, param, solver, churn, t0, alpha[0])
    times = grid64.to(dtype=x0.dtype, device=x0.device)

    def draw(k: int, like: Tensor) -> Tensor:
        if noise is not None:
            z = noise[k].to(dtype=like.dtype, device=like.device)
        else:
            z = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        return z if mask is None else z * mask

    x = x0
    states = [x0] if return_trajectory else None
    with torch.no_grad():
        for k in range(steps):
            tt = torch.full((x.shape[0],), grid[k], dtype=x.dtype, device=x.device)
            pred = call_velocity(model, x, tt, cond, mask)
            if mask is not None:
                pred = pred * mask
            x1_hat, eps_hat = to_x1_eps(pred, param, x, tt, scheduler)
            a, s, a_next, s_next = alpha[k], sigma[k], alpha[k + 1], sigma[k + 1]
            if solver == "ddim":
                c = ddim_noise_scale(churn, a, s, a_next, s_next)
                x_next = a_next * x1_hat + math.sqrt(max(0.0, s_next * s_next - c * c)) * eps_hat
                x = x_next + c * draw(k, x) if c > 0 else x_next
            else:
                h = grid[k + 1] - grid[k]
                v = pred if param == "velocity" else d_alpha[k] * x1_hat + d_sigma[k] * eps_hat
                if churn == 0 or k == steps - 1:
                    x = x + h * v
                else:
                    d = d_alpha[k] * s - d_sigma[k] * a  # (g^2 / 2) s = -(D / alpha) eps
                    g = math.sqrt(2.0 * s * d / a)
                    drift = v - (churn * churn * d / a) * eps_hat
                    x = x + h * drift + (churn * g * math.sqrt(h)) * draw(k, x)
            if states is not None:
                states.append(x)
    trajectory = torch.stack(states, dim=0) if states is not None else None
    return SampleResult(x=x, trajectory=trajectory, times=times, nfe=steps)
