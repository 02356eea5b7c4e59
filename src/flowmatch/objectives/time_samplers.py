"""Time samplers: the law p(t) a :class:`~flowmatch.objectives.cfm.FlowMatcher` draws t from.

Convention: t = 0 is the source (noise), t = 1 the data. Every sampler draws a unit value u in
[0, 1] by its law (:meth:`TimeSampler.sample_unit`, distribution function :meth:`TimeSampler.cdf`)
and maps it affinely onto the path's interval ``path.t_range = (lo, hi)`` as t = lo + (hi - lo) u,
so a path that excludes its endpoints (a Brownian bridge's (t_eps, 1 - t_eps)) is respected.

The laws: :class:`UniformTime` (the CFM default), and from SD3 (Esser et al., "Scaling Rectified
Flow Transformers for High-Resolution Image Synthesis", ICML 2024, section 3.1)
:class:`LogitNormalTime`, :class:`ShiftedTime` (with Flux's :func:`resolution_shift`) and
:class:`ModeTime`; :class:`CallableTime` wraps a user function. SD3 writes its laws for the noise
level s = 1 - t (its t = 1 is noise); here each is written for u = 1 - s.
:func:`parse_time_sampler` reads the command-line spelling.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Generator, Tensor

from flowmatch._utils.validate import check_fits_float32, check_nonnegative_int, check_positive_float, check_probability
from flowmatch.paths import ProbabilityPath

__all__ = [
    "TimeSampler",
    "UniformTime",
    "LogitNormalTime",
    "ShiftedTime",
    "ModeTime",
    "CallableTime",
    "resolution_shift",
    "parse_time_sampler",
    "time_sampler_names",
]

#: Where a draw is made: a device, its name, or None (torch's default).
Device = torch.device | str | None

#: The largest scale for which ModeTime's map is monotone: 1 / (pi / 2 - 1) = 2 / (pi - 2).
MODE_SCALE_MAX = 2.0 / (math.pi - 2.0)


def _finite_float(name: str, value: object) -> float:
    """Return ``value`` as a finite float, else raise ValueError naming the rule and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _unit(u: Tensor) -> Tensor:
    """``u`` as float64 clamped to [0, 1], the domain of every unit CDF."""
    return torch.as_tensor(u, dtype=torch.float64).clamp(0.0, 1.0)


class TimeSampler(ABC):
    """Base class: draws u in [0, 1] by a law and maps it onto the path's interval.

    ``sampler(n, path, device=, dtype=, generator=)`` returns t = lo + (hi - lo) u of shape (n,), (lo, hi)
    = :meth:`interval`, u from :meth:`sample_unit`; ``repr_fields`` names the attributes the repr shows.
    """

    repr_fields: tuple[str, ...] = ()

    @abstractmethod
    def sample_unit(
        self, n: int, *, device: Device = None, dtype: torch.dtype = torch.float32, generator: Generator | None = None
    ) -> Tensor:
        """Draw n unit values u in [0, 1] by the sampler's law, shape (n,), all from ``generator``."""

    @abstractmethod
    def cdf(self, u: Tensor) -> Tensor:
        """P(U <= u) of the unit draw, in float64, same shape as ``u`` (values outside [0, 1] clamp)."""

    def interval(self, path: ProbabilityPath) -> tuple[float, float]:
        """The interval (lo, hi) the unit draw is mapped onto: the path's ``t_range``."""
        return path.t_range

    def __call__(
        self,
        n: int,
        path: ProbabilityPath,
        *,
        device: Device = None,
        dtype: torch.dtype = torch.float32,
        generator: Generator | None = None,
    ) -> Tensor:
        """Draw t of shape (n,) on the path's interval: t = lo + (hi - lo) u, clamped to [lo, hi] as ``dtype``
        rounds them (in float32, 0.1 + 0.8 * 1 lands one step above 0.9)."""
        n = check_nonnegative_int("number of times n", n)
        lo, hi = self.interval(path)
        u = self.sample_unit(n, device=device, dtype=dtype, generator=generator)
        return (lo + (hi - lo) * u).clamp(lo, hi)

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.repr_fields)
        return f"{type(self).__name__}({args})"


class UniformTime(TimeSampler):
    """t ~ U[low, high] intersected with the path's interval ``t_range`` (U[0, 1] for most paths).

    The unit draw is u ~ U[0, 1] (``torch.rand``), its CDF the identity on [0, 1].

    Args:
        low: optional lower end in [0, 1] (None: the path's).
        high: optional upper end in [0, 1] (None: the path's).
    """

    repr_fields = ("low", "high")

    def __init__(self, low: float | None = None, high: float | None = None):
        low = None if low is None else check_probability("time sampler low", low)
        high = None if high is None else check_probability("time sampler high", high)
        if low is not None and high is not None and not low < high:
            raise ValueError(f"time interval must satisfy low < high, got [{low}, {high}]")
        self.low = low
        self.high = high

    def interval(self, path: ProbabilityPath) -> tuple[float, float]:
        """``path.t_range`` intersected with [low, high]."""
        lo = path.t_range[0] if self.low is None else max(self.low, path.t_range[0])
        hi = path.t_range[1] if self.high is None else min(self.high, path.t_range[1])
        if lo > hi:
            raise ValueError(f"{self!r} must meet the path's t_range {path.t_range}, got the empty [{lo}, {hi}]")
        return lo, hi

    def sample_unit(
        self, n: int, *, device: Device = None, dtype: torch.dtype = torch.float32, generator: Generator | None = None
    ) -> Tensor:
        """u ~ U[0, 1): ``torch.rand(n)``."""
        return torch.rand(n, device=device, dtype=dtype, generator=generator)

    def cdf(self, u: Tensor) -> Tensor:
        """F(u) = u on [0, 1]."""
        return _unit(u)


class LogitNormalTime(TimeSampler):
    """Logit-normal time: u = sigmoid(mean + std z), z ~ N(0, 1); F(u) = Phi((logit(u) - mean) / std).

    Esser et al. 2024 (SD3), "logit-normal sampling", their best setting m = 0, s = 1 (the default).
    SD3 writes the law for the noise level 1 - t, whose logit is minus ours: SD3's location m is
    ``mean = -m`` here (the scale is the same); mean > 0 puts more time near the data.

    Args:
        mean: location of logit(u), a finite number.
        std: scale of logit(u), > 0.
    """

    repr_fields = ("mean", "std")

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean = _finite_float("LogitNormalTime mean", mean)
        self.std = check_positive_float("LogitNormalTime std", std)

    def sample_unit(
        self, n: int, *, device: Device = None, dtype: torch.dtype = torch.float32, generator: Generator | None = None
    ) -> Tensor:
        """u = sigmoid(mean + std z) with z = ``torch.randn(n)``."""
        z = torch.randn(n, device=device, dtype=dtype, generator=generator)
        return torch.sigmoid(self.mean + self.std * z)

    def cdf(self, u: Tensor) -> Tensor:
        """F(u) = Phi((logit(u) - mean) / std)."""
        u = _unit(u)
        return torch.special.ndtr((torch.logit(u) - self.mean) / self.std)


class ShiftedTime(TimeSampler):
    """The SD3 / Flux timestep shift of a base sampler's unit draw.

    SD3 (Esser et al. 2024, section 5.3.2) shifts the noise level s = 1 - u of a draw as
    s' = shift s / (1 + (shift - 1) s), so shift > 1 puts more time near the noise (t = 0);
    here u' = 1 - s' = u / (shift - (shift - 1) u), with u from ``base``. The CDF is the base's at
    the inverse map: F(u') = F_base(shift u' / (1 + (shift - 1) u')). SD3 uses shift = 3 at
    1024^2 pixels; Flux sets shift = exp(mu) from the image's token count
    (:func:`resolution_shift`, :meth:`for_resolution`).

    Args:
        shift: the shift factor, > 0 (1: no shift).
        base: the sampler whose unit draw is shifted (default :class:`UniformTime`); it must draw
            on the whole unit interval (a :class:`UniformTime` without low/high).
    """

    repr_fields = ("shift", "base")

    def __init__(self, shift: float, base: TimeSampler | None = None):
        shift = check_fits_float32("ShiftedTime shift", check_positive_float("ShiftedTime shift", shift))
        self.shift = check_fits_float32("ShiftedTime shift", shift, "1/shift", 1.0 / shift)  # draws are float32
        base = UniformTime() if base is None else base
        if not isinstance(base, TimeSampler):
            raise TypeError(f"ShiftedTime base must be a TimeSampler, got {type(base).__name__}")
        if isinstance(base, UniformTime) and (base.low is not None or base.high is not None):
            raise ValueError(f"ShiftedTime base must draw on the whole unit interval (no low/high), got {base!r}")
        self.base = base

    @classmethod
    def for_resolution(cls, n_tokens: float, base: TimeSampler | None = None, **kw: float) -> ShiftedTime:
        """The Flux shift for an image of ``n_tokens`` tokens: ``ShiftedTime(resolution_shift(n_tokens, **kw), base)``.

        Args:
            n_tokens: the image's number of tokens (latent patches).
            base: as for :class:`ShiftedTime`.
            **kw: ``base_tokens``, ``max_tokens``, ``base_shift``, ``max_shift`` of :func:`resolution_shift`.
        """
        return cls(resolution_shift(n_tokens, **kw), base=base)

    def sample_unit(
        self, n: int, *, device: Device = None, dtype: torch.dtype = torch.float32, generator: Generator | None = None
    ) -> Tensor:
        """u' = u / (shift - (shift - 1) u), u from the base's unit draw."""
        u = self.base.sample_unit(n, device=device, dtype=dtype, generator=generator)
        return u / (self.shift - (self.shift - 1.0) * u)

    def cdf(self, u: Tensor) -> Tensor:
        """F(u') = F_base(shift u' / (1 + (shift - 1) u'))."""
        u = _unit(u)
        return self.base.cdf(self.shift * u / (1.0 + (self.shift - 1.0) * u))


def resolution_shift(
    n_tokens: float,
    *,
    base_tokens: float = 256,
    max_tokens: float = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """Flux's resolution-dependent shift: exp(mu), mu linear in the token count.

    mu = base_shift + (max_shift - base_shift) (n_tokens - base_tokens) / (max_tokens - base_tokens),
    so exp(0.5) at 256 tokens and exp(1.15) at 4096 (Flux's defaults; 4096 tokens is a 1024^2
    image in 16 x 16 patches of its latents). Outside [base_tokens, max_tokens] the line is
    extrapolated, as in Flux. Flux's ``time_shift(mu, 1, s) = e^mu / (e^mu + 1/s - 1)`` is the SD3
    shift of :class:`ShiftedTime` with shift = e^mu.

    Args:
        n_tokens: the image's number of tokens, > 0.
        base_tokens: the token count at which mu = base_shift, > 0.
        max_tokens: the token count at which mu = max_shift, > base_tokens.
        base_shift: mu at base_tokens.
        max_shift: mu at max_tokens.

    Returns:
        The shift factor exp(mu) > 0.
    """
    n = check_positive_float("n_tokens", n_tokens)
    x1, x2 = check_positive_float("base_tokens", base_tokens), check_positive_float("max_tokens", max_tokens)
    if not x1 < x2:
        raise ValueError(f"resolution_shift needs base_tokens < max_tokens, got {x1!r} and {x2!r}")
    y1, y2 = _finite_float("base_shift", base_shift), _finite_float("max_shift", max_shift)
    mu = y1 + (y2 - y1) * (n - x1) / (x2 - x1)
    if not -700.0 < mu < 700.0:
        raise ValueError(f"resolution_shift must give a finite shift exp(mu), got mu = {mu!r} for n_tokens {n!r}")
    return math.exp(mu)


class ModeTime(TimeSampler):
    """SD3's mode sampling with heavy tails (Esser et al. 2024, section 3.1, f_mode).

    Noise level s = 1 - v - scale (cos^2(pi v / 2) - 1 + v) with v ~ U[0, 1], and u = 1 - s =
    v + scale (v - sin^2(pi v / 2)). The map v -> u fixes 0 and 1 and is monotone exactly for
    scale in [-1, 2 / (pi - 2)] (its slope 1 + scale (1 - (pi / 2) sin(pi v)) stays >= 0), so F(u)
    is its inverse, found by bisection in float64. scale > 0 puts the mode at the middle, < 0 at
    the ends; 0 is uniform. SD3's default scale is 1.29.

    Args:
        scale: the mode scale, in [-1, 2 / (pi - 2)] ~ [-1, 1.7519].
    """

    repr_fields = ("scale",)

    def __init__(self, scale: float = 1.29):
        scale = _finite_float("ModeTime scale", scale)
        if not -1.0 <= scale <= MODE_SCALE_MAX:
            raise ValueError(f"ModeTime scale must lie in [-1, 2/(pi - 2)] (its map is monotone there), got {scale!r}")
        self.scale = scale

    def unit_map(self, v: Tensor) -> Tensor:
        """u = v + scale (v - sin^2(pi v / 2)), the monotone map of v in [0, 1] onto [0, 1]."""
        return v + self.scale * (v - torch.sin(0.5 * math.pi * v) ** 2)

    def sample_unit(
        self, n: int, *, device: Device = None, dtype: torch.dtype = torch.float32, generator: Generator | None = None
    ) -> Tensor:
        """u = :meth:`unit_map` (v), v = ``torch.rand(n)`` (clamped to [0, 1] against rounding)."""
        v = torch.rand(n, device=device, dtype=dtype, generator=generator)
        return self.unit_map(v).clamp(0.0, 1.0)

    def cdf(self, u: Tensor) -> Tensor:
        """F(u) = v with unit_map(v) = u, by vectorised bisection in float64 to a bracket under 1e-12 (at the
        largest scale the map is flat at v = 1/2, where the rounding of u alone moves v by up to ~1e-5)."""
        u = _unit(u)
        lo, hi = torch.zeros_like(u), torch.ones_like(u)
        for _ in range(41):  # 2**-41 < 1e-12
            mid = 0.5 * (lo + hi)
            below = self.unit_map(mid) < u
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return torch.where((u == 0) | (u == 1), u, 0.5 * (lo + hi))  # the map fixes 0 and 1


class CallableTime(TimeSampler):
    """A user function as the unit draw: ``fn(n, generator=, device=, dtype=)`` -> u of shape (n,) in [0, 1].

    Each draw is checked (a tensor of shape (n,), every value in [0, 1]) and mapped onto the
    path's interval like the other samplers'.

    Args:
        fn: the function drawing u; it should draw only from the generator it is given.
        cdf: optional distribution function of u (``cdf(u) -> Tensor``), for :meth:`cdf`.
    """

    repr_fields = ("fn",)

    def __init__(self, fn: Callable[..., Tensor], cdf: Callable[[Tensor], Tensor] | None = None):
        if not callable(fn):
            raise TypeError(f"CallableTime fn must be callable, got {type(fn).__name__}")
        if cdf is not None and not callable(cdf):
            raise TypeError(f"CallableTime cdf must be callable or None, got {type(cdf).__name__}")
        self.fn = fn
        self.cdf_fn = cdf

    def sample_unit(
        self, n: int, *, device: Device = None, dtype: torch.dtype = torch.float32, generator: Generator | None = None
    ) -> Tensor:
        """u = fn(n, generator=, device=, dtype=), checked, as ``dtype`` on ``device``."""
        u = self.fn(n, generator=generator, device=device, dtype=dtype)
        if not isinstance(u, Tensor):
            raise ValueError(f"CallableTime fn must return a torch.Tensor, got {type(u).__name__}")
        if tuple(u.shape) != (n,):
            raise ValueError(f"CallableTime fn must return shape (n,) = ({n},), got {tuple(u.shape)}")
        outside = ~((u >= 0) & (u <= 1))
        if bool(outside.any()):
            i = int(outside.nonzero()[0, 0])
            raise ValueError(f"CallableTime fn must return values in [0, 1], got {float(u[i])!r} at index {i}")
        return u.to(device=device, dtype=dtype)

    def cdf(self, u: Tensor) -> Tensor:
        """The ``cdf`` given at construction, in float64."""
        if self.cdf_fn is None:
            raise NotImplementedError("CallableTime has no cdf: pass cdf= to CallableTime")
        return torch.as_tensor(self.cdf_fn(_unit(u)), dtype=torch.float64)


#: The spellings :func:`parse_time_sampler` reads.
SPEC_FORMS = ("uniform", "logit-normal", "logit-normal:MEAN,STD", "shift:S", "shift:S:BASE", "mode", "mode:SCALE")


def time_sampler_names() -> list[str]:
    """The kinds of time sampler :func:`parse_time_sampler` reads, sorted."""
    return sorted({form.split(":")[0] for form in SPEC_FORMS})


def _spec_error(spec: str) -> ValueError:
    return ValueError(f"unknown time sampler {spec!r}; valid forms: {', '.join(SPEC_FORMS)} (BASE: any form but shift)")


def _number(spec: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"time sampler {spec!r} needs a number, got {text!r}") from None


def parse_time_sampler(spec: str) -> TimeSampler:
    """Read a time sampler from its command-line spelling.

    ``uniform``; ``logit-normal`` or ``logit-normal:MEAN,STD``; ``shift:S`` (uniform base) or
    ``shift:S:BASE`` with BASE any other form (``shift:3:logit-normal:0,1``); ``mode`` or
    ``mode:SCALE``. Parameters are checked by the samplers' constructors.

    Args:
        spec: the spelling, e.g. ``"logit-normal:0,1"``.

    Returns:
        The sampler, e.g. ``LogitNormalTime(mean=0.0, std=1.0)``.
    """
    if not isinstance(spec, str):
        raise ValueError(f"time sampler spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    kind, _, rest = text.partition(":")
    if text == "uniform":
        return UniformTime()
    if kind == "logit-normal" and (":" not in text or rest.count(",") == 1):
        return LogitNormalTime(*(_number(spec, x) for x in rest.split(","))) if rest else LogitNormalTime()
    if kind == "mode":
        return ModeTime(_number(spec, rest)) if ":" in text else ModeTime()
    if kind == "shift" and rest:
        shift, sep, base = rest.partition(":")
        if base.partition(":")[0] != "shift" and (base or not sep):
            return ShiftedTime(_number(spec, shift), parse_time_sampler(base) if base else None)
    raise _spec_error(spec)
