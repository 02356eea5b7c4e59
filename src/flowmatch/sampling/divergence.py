"""Divergences of a velocity field and the state augmented with the log-density.

Along a trajectory of ``dx/dt = v(t, x)`` the density of a continuous normalizing flow obeys the
instantaneous change of variables (Chen et al., "Neural Ordinary Differential Equations",
NeurIPS 2018, Theorem 1; Grathwohl et al., "FFJORD", ICLR 2019, Eq. 4)

    d/dt log p_t(x_t) = -div v(t, x_t).

:class:`DivergenceField` is the augmented field ``[x, l] -> [v(t, x), div v(t, x)]`` on flat states
``(B, D + 1)``; integrated by :func:`flowmatch.sample` over ``t0 -> t1`` it gives
``l(t1) - l(t0) = int_{t0}^{t1} div v dt`` along the trajectory, so that

    log p_{t1}(x_{t1}) = log p_{t0}(x_{t0}) - (l(t1) - l(t0)).

Both :func:`flowmatch.log_likelihood` (backward, data to source) and ``sample(log_prob=True)``
(forward, source to data, in the same solve that samples) integrate it; :class:`LogProbSolve`
holds what the forward solve needs (probes, the augmented states, the source density).

Divergence: exact, ``sum_i (e_i^T J)_i`` with one vector-Jacobian product per basis vector
``e_i``, vectorised with ``torch.func.vmap`` over the basis (cost ``D`` backward passes, memory
``O(B D^2)``); or Hutchinson's estimator ``div v ~ (1/K) sum_k eps_k^T J eps_k`` with
``E[eps eps^T] = I`` (Hutchinson 1989; FFJORD), with ``K`` Rademacher or Gaussian probes drawn
once per trajectory, unbiased at any ``D``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_positive_int
from flowmatch.models.contract import call_velocity

__all__ = [
    "DIVERGENCES",
    "PROBE_DISTRIBUTIONS",
    "standard_normal_log_prob",
    "hutchinson_probes",
    "velocity_and_divergence",
    "log_prob_per_row",
    "DivergenceField",
    "LogProbSolve",
]

#: Choices of the divergence estimator.
DIVERGENCES = ("exact", "hutchinson")
#: Choices of the distribution of Hutchinson's probes.
PROBE_DISTRIBUTIONS = ("rademacher", "gaussian")
_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I) = -||z||^2 / 2 - (D / 2) log(2 pi)`` per row of ``z`` (B, *dims) -> (B,)."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * (flat * flat).sum(dim=1) - 0.5 * flat.shape[1] * _LOG_2PI


def log_prob_per_row(fn: Callable[[Tensor], Any], z: Tensor, what: str) -> Tensor:
    """``fn(z)`` checked to be one log-density per row of ``z``, shape ``(B,)``.

    Args:
        fn: the log-density, ``fn(z) -> (B,)``.
        z: points of shape ``(B, *dims)``.
        what: how the error message names ``fn``.

    Returns:
        The ``(B,)`` tensor ``fn(z)``.

    Raises:
        ValueError: if ``fn(z)`` is not a tensor of shape ``(B,)``.
    """
    lp = fn(z)
    if not isinstance(lp, Tensor) or lp.shape != (z.shape[0],):
        got = tuple(lp.shape) if isinstance(lp, Tensor) else type(lp).__name__
        raise ValueError(
            f"{what} must return one value per sample, shape ({z.shape[0]},), got {got}; "
            "wrap a per-coordinate distribution in torch.distributions.Independent"
        )
    return lp


def hutchinson_probes(
    x: Tensor, n_probes: int = 1, kind: str = "rademacher", *, generator: torch.Generator | None = None
) -> Tensor:
    """Probe vectors for Hutchinson's trace estimator, shape ``(K, B, *dims)`` for ``x`` (B, *dims).

    ``kind="rademacher"``: entries +-1 with probability 1/2 (the minimum-variance choice);
    ``"gaussian"``: entries N(0, 1). Both satisfy ``E[eps eps^T] = I``, so
    ``E[eps^T J eps] = tr J`` (Hutchinson 1989). Drawn from ``generator`` (on its device) and
    moved to ``x``'s device and dtype.
    """
    n_probes = check_positive_int("n_probes", n_probes)
    check_choice("probe distribution", kind, PROBE_DISTRIBUTIONS)
    shape = (n_probes, *x.shape)
    device = generator.device if generator is not None else x.device
    if kind == "rademacher":
        eps = torch.randint(0, 2, shape, generator=generator, device=device).to(x.dtype) * 2 - 1
    else:
        eps = torch.randn(shape, generator=generator, device=device, dtype=x.dtype)
    return eps.to(device=x.device, dtype=x.dtype)


def _basis(x: Tensor) -> Tensor:
    """The standard basis, one ``e_i`` per row: shape ``(D, B, *dims)`` (an expanded view)."""
    d = x[0].numel()
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return eye.reshape(d, 1, *x.shape[1:]).expand(d, *x.shape)


def velocity_and_divergence(
    model: Callable[..., Tensor], x: Tensor, t: Tensor, cond: Any = None, *, probes: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Velocity ``v(t, x)`` and its divergence ``div v = tr(dv/dx)`` per sample.

    Exact (``probes=None``): ``div v = sum_i (e_i^T J)_i`` from ``D`` vector-Jacobian products
    with the basis vectors, computed in one ``torch.func.vmap`` over the basis. Hutchinson
    (``probes`` of shape ``(K, B, *dims)``): ``(1/K) sum_k eps_k^T J eps_k``, unbiased when
    ``E[eps eps^T] = I`` (Hutchinson 1989; Grathwohl et al. ICLR 2019).

    The samples of the batch must not interact in ``model`` (true for velocity fields in eval
    mode): ``J`` is the Jacobian of each output row with respect to its own input row. The
    result stays on the autograd graph of the model's parameters when gradients are enabled
    (so it can be backpropagated, as the CNF loss does); ``x`` itself need not require grad.

    Args:
        model: ``model(x, t, cond=cond) -> (B, *dims)``.
        x: the states, ``(B, *dims)``.
        t: the times, ``(B,)``.
        cond: conditioning passed to the model.
        probes: ``None`` for the exact divergence, else ``(K, B, *dims)`` probe vectors.

    Returns:
        ``(v, div)`` with ``v`` of shape ``(B, *dims)`` and ``div`` of shape ``(B,)``.
    """
    from torch.func import vjp, vmap

    def f(xx: Tensor) -> Tensor:
        return call_velocity(model, xx, t, cond)

    v, vjp_fn = vjp(f, x)  # type: ignore[misc]  # torch types vjp's result as 2- or 3-tuple whatever has_aux
    if v.shape != x.shape:
        raise ValueError(f"model output must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}")
    b = x.shape[0]
    if probes is None:
        basis = _basis(x)
        d = basis.shape[0]
        (rows,) = vmap(vjp_fn)(basis)  # rows[i] = e_i^T J, shape (D, B, *dims)
        div = torch.diagonal(rows.reshape(d, b, d), dim1=0, dim2=2).sum(dim=-1)
    else:
        if probes.dim() != x.dim() + 1 or probes.shape[1:] != x.shape:
            raise ValueError(
                f"probes must have shape (K, *x.shape) = (K, {', '.join(map(str, x.shape))}), got {tuple(probes.shape)}"
            )
        (rows,) = vmap(vjp_fn)(probes)  # eps_k^T J
        div = (rows * probes).reshape(probes.shape[0], b, -1).sum(dim=-1).mean(dim=0)
    return v, div


class DivergenceField:
    """``[x, l] -> [v(t, x), div v(t, x)]`` on flat states ``(B, D + 1)``, as a model for
    :func:`flowmatch.sample` (``model(state, t, cond=None)``).

    Args:
        model: the velocity field ``model(x, t, cond=None) -> (B, *dims)``.
        dims: the shape of one sample, ``x = state[:, :-1].reshape(B, *dims)``.
        probes: ``None`` for the exact divergence, else Hutchinson probes ``(K, B, *dims)``.
    """

    def __init__(self, model: Callable[..., Tensor], dims: tuple[int, ...], probes: Tensor | None):
        self.model = model
        self.dims = dims
        self.probes = probes

    def __call__(self, state: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        b = state.shape[0]
        x = state[:, :-1].reshape(b, *self.dims)
        v, div = velocity_and_divergence(self.model, x, t, cond, probes=self.probes)
        return torch.cat([v.reshape(b, -1), div.reshape(b, 1).to(v.dtype)], dim=1)


class LogProbSolve:
    """What ``sample(log_prob=True)`` needs around its solve of ``[x, l]``: the checked options, the
    Hutchinson probes (drawn once for all ``n`` rows, so chunking does not change them), the
    augmented field and states of a chunk, and ``log p_1(x_1) = log p_0(x_0) - l(1)``.

    Args:
        x0: the initial states ``(n, *dims)``.
        mask: must be ``None``: padded samples have no density under the flow.
        source_log_prob: ``log p_0``, called as ``source_log_prob(x0) -> (n,)``; ``None`` is the
            standard normal.
        divergence: one of :data:`DIVERGENCES`.
        probes: Hutchinson probes per trajectory (> 0).
        probe_distribution: one of :data:`PROBE_DISTRIBUTIONS`.
        generator: source of the probes.

    Raises:
        ValueError: for a mask, an unknown divergence or probe distribution, non-positive ``probes``, or a
            ``source_log_prob`` that is not callable.
    """

    def __init__(
        self,
        x0: Tensor,
        mask: Tensor | None,
        source_log_prob: Callable[[Tensor], Tensor] | None,
        divergence: str,
        probes: int,
        probe_distribution: str,
        generator: torch.Generator | None,
    ) -> None:
        if mask is not None:
            raise ValueError("sample(log_prob=True) takes no mask: padded samples have no density under the flow")
        check_choice("divergence", divergence, DIVERGENCES)
        probes = check_positive_int("probes", probes)
        check_choice("probe_distribution", probe_distribution, PROBE_DISTRIBUTIONS)
        if source_log_prob is not None and not callable(source_log_prob):
            raise ValueError(
                f"source_log_prob must be callable as source_log_prob(x0) -> (n,), got {type(source_log_prob).__name__}"
            )
        self.source_log_prob = source_log_prob
        self.dims = tuple(x0.shape[1:])
        self.probes = None
        if divergence == "hutchinson":
            self.probes = hutchinson_probes(x0, probes, probe_distribution, generator=generator)

    def field(self, model: Callable[..., Tensor], lo: int, hi: int) -> DivergenceField:
        """The augmented field of rows ``lo:hi``."""
        return DivergenceField(model, self.dims, None if self.probes is None else self.probes[:, lo:hi])

    @staticmethod
    def state(x: Tensor) -> Tensor:
        """``[x, 0]`` flattened: ``(B, *dims) -> (B, D + 1)``."""
        flat = x.reshape(x.shape[0], -1)
        return torch.cat([flat, flat.new_zeros(flat.shape[0], 1)], dim=1)

    def states_x(self, states: Tensor) -> Tensor:
        """The ``x`` part of augmented states ``(..., B, D + 1) -> (..., B, *dims)``."""
        return states[..., :-1].reshape(*states.shape[:-1], *self.dims)

    def log_prob(self, x0: Tensor, ends: list[Tensor]) -> Tensor:
        """``log p_0(x_0) - l(1)`` for the initial states ``x0`` and the final augmented states
        ``ends`` of the chunks, in row order."""
        if self.source_log_prob is None:
            lp0 = standard_normal_log_prob(x0)
        else:
            lp0 = log_prob_per_row(self.source_log_prob, x0, "source_log_prob(x0)")
        return lp0 - torch.cat([end[:, -1] for end in ends]).to(lp0.dtype)
