"""Input checks shared by every public boundary: one-line errors that name the rule and the value."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "check_positive_int",
    "check_nonnegative_int",
    "check_nonnegative_float",
    "check_positive_float",
    "check_probability",
    "check_choice",
    "check_finite",
    "check_fits_float32",
    "FLOAT32_MAX",
]

#: The largest finite float32, the dtype the paths, models and samplers compute in.
FLOAT32_MAX = 3.4028234663852886e38


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as int if it is an integer > 0, else raise ValueError naming the rule."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int,))
        and not (isinstance(value, float) and value.is_integer())
    ):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` as int if it is an integer >= 0, else raise ValueError naming the rule."""
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if int(value) < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _number(value: Any) -> float:
    """float(value); a bool (``lr = true`` in a config) is not a number."""
    if isinstance(value, bool):
        raise TypeError
    return float(value)


def check_nonnegative_float(name: str, value: Any) -> float:
    """Return ``value`` as float if it is finite and >= 0."""
    try:
        v = _number(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as float if it is finite and > 0."""
    try:
        v = _number(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` as float if it lies in [0, 1]."""
    try:
        v = _number(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists the valid names."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(sorted(choices))}")
    return value


def check_fits_float32(name: str, value: float, quantity: str | None = None, derived: float | None = None) -> float:
    """Return ``value`` if it, or the ``quantity`` named ``derived`` that a computation makes from it,
    is finite in float32; else raise ValueError naming the setting, the rule and the value."""
    x = value if derived is None else derived
    if math.isfinite(x) and abs(x) <= FLOAT32_MAX:
        return value
    if quantity is None:
        raise ValueError(f"{name} must be finite in float32 (at most {FLOAT32_MAX:.4g}), got {value!r}")
    raise ValueError(
        f"{name} must keep {quantity} finite in float32 (at most {FLOAT32_MAX:.4g}), got {name} "
        f"{value!r}, which makes it {x:.4g}"
    )


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise ValueError if ``x`` holds NaN or Inf, saying how many and where the first one is."""
    import torch

    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        n_bad = int(bad.sum())
        first = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(f"{name} must be finite, got {n_bad} NaN/Inf value(s) (first at index {first})")
    return x
