"""GPU speed options of training: bf16 autocast, ``torch.compile`` of the model, TF32 matmuls.

They apply only on CUDA. Requested on another device they are ignored with one warning
(:class:`SpeedOptionWarning`), so a run's config.toml written on a GPU machine still runs on a
laptop. What each does:

- ``bf16``: the forward pass and loss run under ``torch.autocast("cuda", dtype=torch.bfloat16)``
  (matmuls and convolutions in bfloat16, reductions in float32); weights, gradients and the
  optimizer stay float32, and sampling/evaluation run in float32.
- ``compile``: training calls ``torch.compile(model)``, which shares the parameters of ``model``;
  checkpoints, the EMA and sampling use the uncompiled module (same weights, plain state_dict).
- ``tf32``: ``torch.set_float32_matmul_precision("high")``: float32 matmuls use TF32 tensor cores
  (a process-wide setting; cuDNN convolutions already use TF32 by default).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, fields

import torch
from torch import nn

__all__ = ["SpeedOptions", "SpeedOptionWarning"]


class SpeedOptionWarning(UserWarning):
    """A GPU speed option was requested where it does not apply (not CUDA)."""


@dataclass(frozen=True)
class SpeedOptions:
    """Which GPU speed options to use (all off by default)."""

    bf16: bool = False
    compile: bool = False
    tf32: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, bool):
                raise ValueError(f"{f.name} must be true or false, got {v!r}")

    @property
    def requested(self) -> tuple[str, ...]:
        """Names of the options that are on."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name))

    def for_device(self, device: torch.device, *, warn: bool = True) -> SpeedOptions:
        """The options that apply on ``device``: all of them on CUDA, none elsewhere (with a
        :class:`SpeedOptionWarning` naming the ignored ones when ``warn``)."""
        if device.type == "cuda" or not self.requested:
            return self
        if warn:
            warnings.warn(ignored_message(self.requested, device), SpeedOptionWarning, stacklevel=2)
        return SpeedOptions()

    def setup(self, model: nn.Module) -> nn.Module:
        """Apply the process-wide settings (TF32) and return the module to train with (compiled
        when ``compile``; it shares ``model``'s parameters)."""
        if self.tf32:
            torch.set_float32_matmul_precision("high")
        # torch's stubs type compile() of a module as a plain callable; it is an OptimizedModule
        return torch.compile(model) if self.compile else model  # type: ignore[return-value]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of the forward pass: bf16 autocast on CUDA, or nothing."""
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def ignored_message(names: tuple[str, ...], device: torch.device) -> str:
    """One line: which options were ignored on which device."""
    flags = ", ".join("--" + n for n in names)
    return f"{flags}: CUDA only, ignored on device {device.type}"
