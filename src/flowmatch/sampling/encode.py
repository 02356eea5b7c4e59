"""Encoding data into the source and decoding it back: the flow map and its inverse, integrated
from ``t = 1`` to ``t = 0`` and back (the flow map is a diffeomorphism; Lipman et al. ICLR 2023,
Eq. 1). Thin over :func:`flowmatch.sample` with the time span reversed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from flowmatch.sampling.ode import SampleResult, sample

__all__ = ["encode", "decode"]


def encode(
    model: Callable[..., Tensor],
    x: Tensor,
    *,
    solver: str = "dopri5",
    steps: int = 100,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    cond: Any = None,
    chunk_size: int | None = None,
    max_steps: int | None = None,
) -> SampleResult:
    """Encode data into the source: integrate ``dx/dt = v(t, x)`` from ``t = 1`` to ``t = 0``.

    The inverse of :func:`decode` (the flow map is a diffeomorphism), up to the solver's error.
    Thin over :func:`flowmatch.sample` with ``t_span=(1, 0)``; ``result.x`` holds the codes
    ``z`` of shape ``(n, *dims)``.
    """
    return sample(
        model,
        x,
        solver=solver,
        steps=steps,
        t_span=(1.0, 0.0),
        cond=cond,
        atol=atol,
        rtol=rtol,
        chunk_size=chunk_size,
        max_steps=max_steps,
    )


def decode(
    model: Callable[..., Tensor],
    z: Tensor,
    *,
    solver: str = "dopri5",
    steps: int = 100,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    cond: Any = None,
    chunk_size: int | None = None,
    max_steps: int | None = None,
) -> SampleResult:
    """Decode source points into data: integrate ``dx/dt = v(t, x)`` from ``t = 0`` to ``t = 1``.

    The same as sampling (Lipman et al. ICLR 2023, Eq. 1) with dopri5 by default; ``result.x``
    holds the data points of shape ``(n, *dims)``.
    """
    return sample(
        model,
        z,
        solver=solver,
        steps=steps,
        t_span=(0.0, 1.0),
        cond=cond,
        atol=atol,
        rtol=rtol,
        chunk_size=chunk_size,
        max_steps=max_steps,
    )
