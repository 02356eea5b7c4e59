"""Which torch device a run uses: ``--device auto|cpu|cuda|cuda:N|mps``, resolved and checked once."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other value is passed to torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {str(device)!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was requested but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        why = "is not built with MPS support" if not torch.backends.mps.is_built() else "finds no MPS device"
        raise ValueError(
            f"device {str(device)!r} needs Apple's MPS backend, but this PyTorch {why}; use --device cpu or auto"
        )
    return dev
