"""Generating sequences with a trained sequence run's network: text-to-speech (tokens and speaker
given, every frame generated), infilling (a span generated from the rest) and the regression
baseline's single prediction, each timed (for the real-time factor) and denormalised."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.data.batches import SequenceBatch
from flowmatch.data.seqcond import SequenceCondition
from flowmatch.models.guidance import guided
from flowmatch.objectives.regression import predict
from flowmatch.sampling.infill import infill
from flowmatch.sampling.ode import sample

__all__ = ["Generated", "generate", "tts_condition"]


@dataclass
class Generated:
    """``x``: the generated sequences in the data's (normalised) units, zero in the padding;
    ``nfe``: network evaluations per sequence; ``seconds``: wall time of the generation."""

    x: Tensor
    nfe: int
    seconds: float


def tts_condition(cond: SequenceCondition | None, x: Tensor, infill_model: bool) -> SequenceCondition | None:
    """The condition of full generation: for a model trained to infill, an empty context (every
    frame in the span, as its training spans of the whole utterance)."""
    if not infill_model:
        return cond
    empty = torch.zeros_like(x)
    return SequenceCondition(context=empty) if cond is None else cond.with_context(empty)


def _noise(shape_like: Tensor, seed: int, temperature: float) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (temperature * torch.randn(shape_like.shape, generator=g)).to(shape_like.device, shape_like.dtype)


@torch.no_grad()
def generate(
    model: nn.Module,
    batch: SequenceBatch,
    *,
    regression: bool = False,
    infill_model: bool = False,
    span: Tensor | None = None,
    guidance: float = 1.0,
    solver: str = "euler",
    steps: int = 10,
    seed: int = 0,
    temperature: float = 1.0,
    chunk_size: int | None = 64,
    **solver_kw: Any,
) -> Generated:
    """Generate ``batch``'s sequences (their lengths, tokens and speakers; ``batch.x`` is read only
    outside ``span``, as the context of infilling).

    With ``span`` (``(B, 1, T)``) an infilling model regenerates the span and keeps the rest of
    ``batch.x`` exactly; without, every frame is generated (for an infilling model, from an empty
    context). Classifier-free guidance with scale ``guidance`` applies to conditional runs
    (w = 1: the conditional field). The noise comes from a generator seeded with ``seed``, scaled
    by ``temperature`` (x0 ~ N(0, T^2 I); Matcha-TTS synthesises with T = 0.667, trading diversity
    for less residual noise).
    """
    from flowmatch._utils.validate import check_positive_float

    temperature = check_positive_float("temperature", temperature)
    x, mask = batch.x, batch.mask
    cond = batch.cond
    t0 = time.perf_counter()
    if regression:
        out = predict(model, x, cond, mask)
        return Generated(out, 1, time.perf_counter() - t0)
    field = guided(model, guidance) if (cond is not None or infill_model) and guidance != 1.0 else model
    x0 = _noise(x, seed, temperature)
    if span is not None:
        res = infill(
            field, x, span, mask=mask, cond=cond, x0=x0, solver=solver, steps=steps, chunk_size=chunk_size, **solver_kw
        )
        return Generated(res.x, res.nfe, time.perf_counter() - t0)
    full = tts_condition(cond, x, infill_model)
    res_s = sample(field, x0, solver=solver, steps=steps, cond=full, mask=mask, chunk_size=chunk_size, **solver_kw)
    return Generated(res_s.x * mask, res_s.nfe, time.perf_counter() - t0)
