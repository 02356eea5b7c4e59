"""Optimisation helpers of the Trainer: the optimiser, the learning-rate schedule and the EMA of
the weights."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["LR_SCHEDULES", "learning_rate", "EMA", "adamw"]

LR_SCHEDULES = ("constant", "cosine")


def adamw(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the model's parameters, with PyTorch's fused kernel where it exists.

    The fused kernel (``fused=True``: one kernel for all parameters, on the CPU and CUDA) is the
    same update as the default per-tensor loop up to rounding, and much cheaper for small models
    (measured: docs/benchmarks.md, "Timings behind the docstrings").
    """
    params = list(model.parameters())
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True if fused else None)


def learning_rate(base_lr: float, schedule: str, step: int, total: int) -> float:
    """Learning rate of optimisation step ``step`` (0-based) out of ``total``.

    constant: base_lr; cosine: base_lr (1 + cos(pi step / total)) / 2 (Loshchilov & Hutter 2017,
    without restarts). A pure function of the step, so resuming needs no scheduler state.
    """
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
    return base_lr


def ema_decay_at(decay: float, step: int, warmup: bool) -> float:
    """The decay of the EMA update after optimisation step ``step`` (0-based).

    warmup: min(decay, (1 + step) / (10 + step)) (the warm-up of diffusers' EMAModel), so that
    the average forgets its random initial weights: without it their share after s steps is
    decay^s (0.999 after 2000 steps: 13.5%, measured to cost a speech decoder 11 dB of MCD, see
    docs/benchmarks.md). With it the share is prod_k (1 + k) / (10 + k) = 1 / C(s + 9, 9) (1e-5 after 10 steps)
    while the decay is below ``decay``.
    """
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


class EMA:
    """Exponential moving average of parameters: theta_ema <- d theta_ema + (1 - d) theta, with
    d = :func:`ema_decay_at` (decay, step, warmup)."""

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Average in ``model``'s weights after optimisation step ``step`` (0-based; None: no
        warm-up, the plain decay)."""
        d = self.decay if step is None else ema_decay_at(self.decay, step, self.warmup)
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.lerp_(p.detach(), 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
