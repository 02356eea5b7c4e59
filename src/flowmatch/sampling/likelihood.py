"""Exact log-likelihoods, encoding and decoding of a flow seen as a continuous normalizing flow.

A velocity field ``v(t, x)`` whose flow carries the source density ``p_0`` (t = 0) to ``p_1``
(t = 1) is a continuous normalizing flow (Chen et al., "Neural Ordinary Differential Equations",
NeurIPS 2018; Grathwohl et al., "FFJORD", ICLR 2019). Along a trajectory ``x_t`` the density
obeys the instantaneous change of variables

    d/dt log p_t(x_t) = -div v(t, x_t),

so for a data point ``x = x_1`` with source end ``z = x_0``

    log p_1(x) = log p_0(z) - int_0^1 div v(t, x_t) dt = log p_0(z) + int_1^0 div v(t, x_t) dt.

:func:`log_likelihood` integrates the augmented state ``[x_t, l_t]`` with ``dl/dt = div v`` from
``t = 1`` (``x_1 = x``, ``l_1 = 0``) to ``t = 0``; then ``z = x_0`` and
``log p_1(x) = log p_0(z) + l_0``. The augmented field is integrated by :func:`flowmatch.sample`
itself, so every solver (fixed-step tableaux and torchdiffeq's adaptive ones) is the same code
that samples.

The divergence, exact or Hutchinson's estimate, and the augmented field live in
:mod:`~flowmatch.sampling.divergence` (re-exported here). ``flowmatch.sample(..., log_prob=True)``
integrates the same augmented state forward, giving ``log p_1`` of the samples it draws in the
solve that draws them.

Bits per dimension: ``bpd = -log p_1(x) / (D ln 2)``. Caveat for images: this is the density of
the continuous data the model was trained on. A bpd comparable with the literature for 8-bit
images needs dequantised data (``x = (k + u) / 256`` with ``u ~ U[0, 1)``) and the Jacobian of the
scaling included: ``bpd = (-log p(x) + D log 256) / (D ln 2)`` for data scaled to ``[0, 1)``
(plus ``D log 2`` more for ``[-1, 1)``); a continuous density of undequantised discrete data is
unbounded and its bpd meaningless.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_finite, check_positive_int
from flowmatch.sampling.divergence import (
    DIVERGENCES,
    PROBE_DISTRIBUTIONS,
    DivergenceField,
    hutchinson_probes,
    log_prob_per_row,
    standard_normal_log_prob,
    velocity_and_divergence,
)
from flowmatch.sampling.encode import decode, encode  # noqa: F401  (their home before encode.py)
from flowmatch.sampling.inputs import splits_with_rows
from flowmatch.sampling.ode import sample

__all__ = [
    "LikelihoodResult",
    "log_likelihood",
    "encode",
    "decode",
    "velocity_and_divergence",
    "hutchinson_probes",
    "standard_normal_log_prob",
    "DIVERGENCES",
    "PROBE_DISTRIBUTIONS",
]


@dataclass
class LikelihoodResult:
    """Result of :func:`log_likelihood`.

    Attributes:
        log_prob: ``log p_1(x)`` in nats, shape ``(n,)``.
        bits_per_dim: ``-log p_1(x) / (D ln 2)``, shape ``(n,)`` (see the module's caveat on
            dequantisation for images).
        z: the source end ``x_0`` of each trajectory (the encoding of ``x``), shape ``(n, *dims)``.
        nfe: evaluations of the augmented field along one trajectory (each is one model forward
            pass plus its divergence); with chunks the maximum over chunks.
        method: the divergence estimator, ``"exact"`` or ``"hutchinson"``.
        solver: the ODE solver used.
    """

    log_prob: Tensor
    bits_per_dim: Tensor
    z: Tensor
    nfe: int
    method: str
    solver: str

    @property
    def mean_nll(self) -> float:
        """Mean negative log-likelihood in nats."""
        return float(-self.log_prob.detach().mean())

    @property
    def mean_bits_per_dim(self) -> float:
        """Mean bits per dimension."""
        return float(self.bits_per_dim.detach().mean())


# --------------------------------------------------------------------------------------------
# Log-likelihood
# --------------------------------------------------------------------------------------------


def _check_data(name: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 2 or x.shape[0] < 1 or x[0].numel() < 1:
        raise ValueError(f"{name} must have shape (n, *dims) with n >= 1 and D >= 1, got {tuple(x.shape)}")
    return check_finite(name, x)


def _prior_log_prob(prior: Any, z: Tensor) -> Tensor:
    if prior is None:
        return standard_normal_log_prob(z)
    return log_prob_per_row(prior.log_prob, z, "prior.log_prob(z)")


def log_likelihood(
    model: Callable[..., Tensor],
    x: Tensor,
    *,
    prior: Any = None,
    divergence: str = "exact",
    n_probes: int = 1,
    probe_dist: str = "rademacher",
    solver: str = "dopri5",
    steps: int = 100,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    cond: Any = None,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    enable_grad: bool = False,
    max_steps: int | None = None,
) -> LikelihoodResult:
    """Log-likelihood ``log p_1(x)`` of data under the flow of ``model`` (a CNF).

    Integrates ``d/dt [x_t, l_t] = [v(t, x_t), div v(t, x_t)]`` from ``t = 1`` (``x_1 = x``,
    ``l_1 = 0``) to ``t = 0`` and returns ``log p_1(x) = log p_0(x_0) + l_0``, i.e. the
    instantaneous change of variables ``log p_1(x) = log p_0(z) - int_0^1 div v(t, x_t) dt``
    (Chen et al. NeurIPS 2018, Theorem 1; Grathwohl et al. ICLR 2019, Eq. 4).

    Args:
        model: velocity field ``model(x, t, cond=None) -> (B, *dims)``; t = 0 is the source.
        x: data, floating tensor of shape ``(n, *dims)``, finite.
        prior: the source density ``p_0``: any object with ``log_prob(z) -> (B,)`` for ``z`` of
            shape ``(B, *dims)`` (e.g. ``torch.distributions.MultivariateNormal``); ``None`` is
            the standard normal ``N(0, I)``.
        divergence: ``"exact"`` (``D`` vectorised vector-Jacobian products per evaluation) or
            ``"hutchinson"`` (unbiased stochastic estimate, for high ``D``).
        n_probes: Hutchinson probes per trajectory (drawn once, reused at every time).
        probe_dist: ``"rademacher"`` or ``"gaussian"`` probes.
        solver: as in :func:`flowmatch.sample` (adaptive solvers control the error of the
            augmented state ``[x, l]``).
        steps: as in :func:`flowmatch.sample`.
        atol: as in :func:`flowmatch.sample`.
        rtol: as in :func:`flowmatch.sample`.
        max_steps: as in :func:`flowmatch.sample`.
        cond: conditioning passed to the model; a tensor with ``n`` rows is chunked along ``x``.
        chunk_size: integrate at most this many points at once (bounds memory); probes are drawn
            for all ``n`` points first, so fixed-step results do not depend on it.
        generator: source of the Hutchinson probes.
        enable_grad: keep the autograd graph through the solver (maximum-likelihood training).

    Returns:
        :class:`LikelihoodResult` with ``log_prob`` and ``bits_per_dim`` of shape ``(n,)``, the
        source ends ``z`` of shape ``(n, *dims)``, ``nfe``, ``method`` and ``solver``.

    Raises:
        ValueError: bad ``x``, unknown divergence/probe distribution, non-positive ``n_probes``
            or ``chunk_size``, a prior whose ``log_prob`` is not ``(B,)``, or any error of
            :func:`flowmatch.sample`'s arguments.
        TypeError: if ``model`` is not callable.

    Example:
        >>> import torch, flowmatch
        >>> res = flowmatch.log_likelihood(lambda x, t, cond=None: 0 * x, torch.zeros(3, 2))
        >>> round(float(res.log_prob[0]), 4)  # the identity flow: log N(0; 0, I_2) = -log(2 pi)
        -1.8379
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t, cond=None), got {type(model).__name__}")
    x = _check_data("x", x)
    check_choice("divergence", divergence, DIVERGENCES)
    n_probes = check_positive_int("n_probes", n_probes)
    check_choice("probe distribution", probe_dist, PROBE_DISTRIBUTIONS)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    if prior is not None and not callable(getattr(prior, "log_prob", None)):
        raise ValueError(f"prior must have a log_prob(z) method, got {type(prior).__name__}")

    n, dims = x.shape[0], tuple(x.shape[1:])
    d = x[0].numel()
    probes = None
    if divergence == "hutchinson":
        probes = hutchinson_probes(x, n_probes, probe_dist, generator=generator)
    split_cond = splits_with_rows(cond, n)
    bounds = [(0, n)] if chunk_size is None else [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]

    log_probs: list[Tensor] = []
    zs: list[Tensor] = []
    nfe = 0
    for lo, hi in bounds:
        xc = x[lo:hi]
        cc = cond[lo:hi] if split_cond else cond
        pc = None if probes is None else probes[:, lo:hi]
        state = torch.cat([xc.reshape(hi - lo, d), xc.new_zeros(hi - lo, 1)], dim=1)
        res = sample(
            DivergenceField(model, dims, pc),
            state,
            solver=solver,
            steps=steps,
            t_span=(1.0, 0.0),
            cond=cc,
            atol=atol,
            rtol=rtol,
            enable_grad=enable_grad,
            max_steps=max_steps,
        )
        with torch.set_grad_enabled(bool(enable_grad)):
            z = res.x[:, :-1].reshape(hi - lo, *dims)
            log_probs.append(_prior_log_prob(prior, z) + res.x[:, -1])
        zs.append(z)
        nfe = max(nfe, res.nfe)
    log_prob = log_probs[0] if len(log_probs) == 1 else torch.cat(log_probs)
    z = zs[0] if len(zs) == 1 else torch.cat(zs)
    bpd = -log_prob / (d * math.log(2.0))
    return LikelihoodResult(log_prob=log_prob, bits_per_dim=bpd, z=z, nfe=nfe, method=divergence, solver=solver)
