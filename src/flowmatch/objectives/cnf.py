"""The simulation-based baseline: a continuous normalizing flow trained by maximum likelihood.

Chen et al. (NeurIPS 2018) and Grathwohl et al. (FFJORD, ICLR 2019) train the velocity field of a
CNF by minimising the negative log-likelihood of the data,

    L(theta) = -E_{x ~ q1} log p_theta(x),
    log p_theta(x) = log N(z; 0, I) - int_0^1 div v_theta(t, x_t) dt,   z = x_0,

which needs an ODE solve per step, backpropagated through (here: directly through the solver's
operations, not the adjoint), with Hutchinson's trace estimator in place of the divergence. It is
the baseline that simulation-free flow matching is compared with (Lipman et al. ICLR 2023,
Sec. 6; Tong et al. TMLR 2024, Sec. 5). :class:`CNFObjective` has the duck-typed interface of
:class:`~flowmatch.objectives.cfm.FlowMatcher` (``.loss(model, x0, x1, cond=None, *, generator=None)``,
``.name``), so :class:`~flowmatch.training.trainer.Trainer` trains it unchanged; it needs the standard normal
source (``x0`` is not used: the source enters only through its density).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_positive_float, check_positive_int
from flowmatch.sampling.likelihood import DIVERGENCES, PROBE_DISTRIBUTIONS, LikelihoodResult, log_likelihood
from flowmatch.sampling.ode import ode_solvers

__all__ = ["CNFObjective"]


class CNFObjective:
    """Maximum-likelihood CNF loss ``-mean_i log p_theta(x1_i)`` with backpropagation through the solver.

    Args:
        solver: ODE solver of the likelihood integral: fixed-step (``rk4``, ``euler``, ...) with
            ``steps`` uniform steps, or adaptive (``dopri5``, with ``atol``/``rtol``).
        steps: number of fixed steps (ignored by adaptive solvers).
        divergence: ``"hutchinson"`` (default, ``n_probes`` probes drawn per sample and step from
            the training generator) or ``"exact"``.
        n_probes: Hutchinson probes per sample (default 1, as in FFJORD).
        probe_dist: ``"rademacher"`` (default) or ``"gaussian"``.
        atol: absolute tolerance of adaptive solvers.
        rtol: relative tolerance of adaptive solvers.
        prior: source density (``log_prob(z) -> (B,)``); ``None`` is ``N(0, I)``.
        name: label for logs.

    Example:
        >>> import torch, flowmatch
        >>> from flowmatch.objectives.cnf import CNFObjective
        >>> cnf = CNFObjective(solver="rk4", steps=4)
        >>> x1 = torch.randn(16, 2)
        >>> loss = cnf.loss(flowmatch.MLP(2), None, x1, generator=torch.Generator().manual_seed(0))
        >>> loss.backward()  # gradients of the NLL through the rk4 solve
    """

    def __init__(
        self,
        *,
        solver: str = "rk4",
        steps: int = 8,
        divergence: str = "hutchinson",
        n_probes: int = 1,
        probe_dist: str = "rademacher",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        prior: Any = None,
        name: str = "cnf",
    ):
        self.solver = check_choice("solver", solver, ode_solvers())
        self.steps = check_positive_int("steps", steps)
        self.divergence = check_choice("divergence", divergence, DIVERGENCES)
        self.n_probes = check_positive_int("n_probes", n_probes)
        self.probe_dist = check_choice("probe distribution", probe_dist, PROBE_DISTRIBUTIONS)
        self.atol = check_positive_float("atol", atol)
        self.rtol = check_positive_float("rtol", rtol)
        if prior is not None and not callable(getattr(prior, "log_prob", None)):
            raise ValueError(f"prior must have a log_prob(z) method, got {type(prior).__name__}")
        self.prior = prior
        self.name = name

    def log_likelihood(
        self,
        model: Callable[..., Tensor],
        x1: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> LikelihoodResult:
        """:func:`flowmatch.log_likelihood` of ``x1`` with this objective's settings, on the graph."""
        return log_likelihood(
            model,
            x1,
            prior=self.prior,
            divergence=self.divergence,
            n_probes=self.n_probes,
            probe_dist=self.probe_dist,
            solver=self.solver,
            steps=self.steps,
            atol=self.atol,
            rtol=self.rtol,
            cond=cond,
            generator=generator,
            enable_grad=True,
        )

    def loss(
        self,
        model: Callable[..., Tensor],
        x0: Tensor | None,
        x1: Tensor,
        cond: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``-mean_i log p_theta(x1_i)`` in nats (a scalar on the autograd graph).

        ``x0`` (the source batch a FlowMatcher would pair with ``x1``) is not used; the Hutchinson
        probes are drawn from ``generator``.
        """
        return -self.log_likelihood(model, x1, cond, generator=generator).log_prob.mean()

    def __repr__(self) -> str:
        return (
            f"CNFObjective(solver={self.solver!r}, steps={self.steps}, divergence={self.divergence!r}, "
            f"n_probes={self.n_probes}, probe_dist={self.probe_dist!r})"
        )
