"""What a network regresses on an affine Gaussian path: the velocity, x1, the noise or the score.

On x_t = alpha_t x1 + sigma_t x0 with x0 ~ N(0, I) (:class:`flowmatch.paths.AffinePath` without
extra noise, from a standard normal source) the four conditional targets are

| parametrisation | target             | weight w_t, ``weighting="default"`` | ``weighting="velocity"`` |
|-----------------|--------------------|-------------------------------------|--------------------------|
| velocity        | alpha' x1 + sigma' x0 | 1                                | 1                        |
| x1              | x1                 | 1                                   | (D / max(sigma, c))^2    |
| eps             | x0                 | 1 (DDPM's "simple" loss)            | (D / max(alpha, c))^2    |
| score           | -x0 / sigma        | sigma^2 (denoising score matching)  | (sigma D / max(alpha, c))^2 |

with D = alpha' sigma - sigma' alpha, and the loss is the (masked) mean of w_t (f - target)^2. The
"velocity" weighting makes every parametrisation's loss the velocity's loss: the velocity is
affine in each prediction with slope D / sigma, -D / alpha and sigma D / alpha
(:mod:`flowmatch.paths.conversions`), so w_t (pred - target)^2 = (v(pred) - u_t)^2 exactly
wherever sigma (for x1) or alpha (for eps, score) is at least ``c = VELOCITY_CLIP = 0.05``. The
unclipped weights diverge at an end of the path and make training diverge; the clip is that of
x-prediction with a velocity loss in Li & He (2025, "Back to Basics: Let Denoising Generative Models
Denoise"), which divide by max(1 - t, 0.05). The score's default loss is computed as
(sigma f + x0)^2, which needs no division by sigma.
"""

from __future__ import annotations

from torch import Tensor

from flowmatch._utils.validate import check_choice
from flowmatch.paths import AffinePath, ProbabilityPath, pad_t

__all__ = ["TARGET_PARAMS", "WEIGHTINGS", "VELOCITY_CLIP", "check_target_param", "weighted_error"]

#: What a FlowMatcher's network may predict.
TARGET_PARAMS = ("velocity", "x1", "eps", "score")
#: Loss weightings of the non-velocity parametrisations (module docstring).
WEIGHTINGS = ("default", "velocity")
#: Smallest alpha or sigma the "velocity" weighting divides by (module docstring).
VELOCITY_CLIP = 0.05


def check_target_param(param: str, path: ProbabilityPath, weighting: str = "default") -> tuple[str, str]:
    """(param, weighting), checked: x1, eps and score need an affine Gaussian path (one-line error)."""
    param = check_choice("target parametrisation", param, TARGET_PARAMS)
    weighting = check_choice("loss weighting", weighting, WEIGHTINGS)
    if param != "velocity" and not (isinstance(path, AffinePath) and path.is_gaussian):
        raise ValueError(
            f"target parametrisation {param!r} needs an affine Gaussian path from a N(0, I) source "
            f"(AffinePath with sigma = 0, e.g. method fm or a --scheduler), got {path!r}"
        )
    return param, weighting


def weighted_error(
    pred: Tensor, param: str, weighting: str, path: AffinePath, t: Tensor, x0: Tensor, x1: Tensor
) -> Tensor:
    """The elementwise w_t (pred - target)^2 of ``pred`` for parametrisation ``param`` (module table);
    x0 is the Gaussian source sample, x1 the data, t (B,)."""
    out = path.scheduler(t)
    a, s, da, ds = (pad_t(v, x0) for v in (out.alpha, out.sigma, out.d_alpha, out.d_sigma))
    d = da * s - ds * a
    if param == "velocity":
        return (pred - (da * x1 + ds * x0)) ** 2
    if param == "x1":
        err = (pred - x1) ** 2
        return err if weighting == "default" else (d / s.clamp(min=VELOCITY_CLIP)) ** 2 * err
    if param == "eps":
        err = (pred - x0) ** 2
    else:
        err = (s * pred + x0) ** 2  # sigma^2 (pred + x0 / sigma)^2
    return err if weighting == "default" else (d / a.clamp(min=VELOCITY_CLIP)) ** 2 * err
