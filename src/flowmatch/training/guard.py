"""The finiteness guard of a training: a step whose loss or gradient is not finite is never
applied, and weights that are not finite are never checkpointed, so the latest checkpoint is
always a finite state to resume from (``--max-bad-steps N`` skips up to N such steps before the
training stops with :class:`TrainingDiverged`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["TrainingDiverged", "step_is_finite", "weights_are_finite", "diverged_message"]


class TrainingDiverged(ValueError):
    """The loss, the gradient or the weights stopped being finite; the latest checkpoint is finite."""


def step_is_finite(loss: Tensor, model: nn.Module) -> bool:
    """Whether the loss and every gradient entry are finite: a NaN or Inf anywhere makes their sum
    non-finite, so one reduction and one host sync per step (a quarter of the cost of the gradient
    norm for the 3x64 MLP, docs/benchmarks.md)."""
    grads = (p.grad.sum().float() for p in model.parameters() if p.grad is not None)
    return bool(torch.isfinite(torch.stack([loss.float(), *grads]).sum()))


def weights_are_finite(models: Iterable[nn.Module]) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in models for p in m.parameters())


def diverged_message(step: int, loss: float, grad_norm: float, lr: float, saved_step: int | None, skipped: int) -> str:
    kept = (
        f"the latest checkpoint (step {saved_step}) is the last finite one"
        if saved_step is not None
        else "no checkpoint was written"
    )
    return (
        f"training diverged at step {step}: loss {loss:g}, gradient norm {grad_norm:g} (lr {lr:g}); the step was "
        f"not applied and {kept}; lower the learning rate, clip the gradient (--grad-clip), check the data's "
        f"scale, or skip such steps with --max-bad-steps N ({skipped} skipped so far)"
    )
