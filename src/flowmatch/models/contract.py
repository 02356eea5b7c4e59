"""The one model contract: a velocity model is called as ``model(x, t, cond=None)`` and returns a
tensor of the shape of ``x``; a model of variable-length sequences also takes ``mask=None``
(``(B, 1, T)``, 1 = valid frame, :mod:`flowmatch.data.masks`), passed only when there is a mask,
so models without padding need no such parameter. Every caller (the objectives' losses, the ODE and SDE samplers, the
likelihood) goes through :func:`call_velocity`, so that a model breaking the contract fails the
same way, with one line, whether it is trained or sampled: a ``forward(x, t)`` without ``cond``
used to train and then fail to sample with a raw TypeError, and a model returning ``x[:, :1]``
trained to a finite loss by broadcasting.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

__all__ = ["call_velocity", "check_output", "ModelContractError"]


class ModelContractError(ValueError):
    """A model that does not follow ``model(x, t, cond=None) -> tensor of x's shape``."""


def _name(model: Any) -> str:
    return type(model).__name__


def _accepts_contract(model: Any, x: Tensor, t: Tensor, cond: Any, extra: dict[str, Any]) -> bool:
    """Whether ``model``'s signature binds ``(x, t, cond=cond, **extra)`` (True where it cannot be read)."""
    fn = model.forward if isinstance(model, nn.Module) else model
    try:
        inspect.signature(fn).bind(x, t, cond=cond, **extra)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins)
        return True
    return True


def check_output(model: Any, out: Any, x: Tensor, what: str = "model output") -> Tensor:
    """``out`` if it is a tensor of ``x``'s shape, else :class:`ModelContractError`."""
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ModelContractError(f"{what} must have the shape of x {tuple(x.shape)}, got {got} (model {_name(model)})")
    return out


def call_velocity(
    model: Callable[..., Any], x: Tensor, t: Tensor, cond: Any = None, mask: Tensor | None = None
) -> Tensor:
    """``model(x, t, cond=cond)`` (with ``mask=mask`` when a mask is given), its output checked to
    have the shape of ``x``.

    A model whose signature refuses the call (no ``cond`` or ``mask`` keyword, a missing ``t``)
    raises :class:`ModelContractError` naming the contract instead of a raw TypeError.
    """
    extra = {} if mask is None else {"mask": mask}
    try:
        out = model(x, t, cond=cond, **extra)
    except TypeError as e:
        if _accepts_contract(model, x, t, cond, extra):
            raise  # a TypeError from inside the model: its own bug, not the contract
        if mask is not None and _accepts_contract(model, x, t, cond, {}):
            raise ModelContractError(
                f"model {_name(model)} must be callable as model(x, t, cond=None, mask=None) to train or sample "
                f"padded sequences, but the call failed: {e}; add a mask=None parameter to its forward"
            ) from None
        raise ModelContractError(
            f"model {_name(model)} must be callable as model(x, t, cond=None) (the model contract of every "
            f"loss and sampler), but the call failed: {e}; add a cond=None parameter to its forward"
        ) from None
    return check_output(model, out, x)
