"""Built-in toy distributions: the 2D benchmark of Tong et al. (TMLR 2024) and the FFJORD toys.

Every builder draws in torch from an optional ``torch.Generator`` (never NumPy's or torch's global
RNG when a generator is given) and returns a float32 tensor of shape ``(n, 2)`` (``gaussian``:
``(n, dim)``) on the generator's device (CPU when no generator is given).

Sources
-------
- Tong et al., "Improving and Generalizing Flow-Based Generative Models with Minibatch Optimal
  Transport", TMLR 2024, Table 2 (``8gaussians``, ``moons``, ``scurve``, ``moons-wide``,
  ``8gaussians-wide``); parameters as in the authors' experiment code (see
  the project's REFERENCES.md, "2D benchmark").
- scikit-learn ``make_moons``, ``make_s_curve``, ``make_circles``, ``make_swiss_roll``: the
  parametrisations are re-implemented here in torch (scikit-learn is not a dependency).
- Grathwohl et al., "FFJORD", ICLR 2019, ``lib/toy_data.py`` (``checkerboard``, ``circles``,
  ``swissroll``, ``pinwheel``, ``spirals``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_nonnegative_float, check_positive_float, check_positive_int

__all__ = [
    "TOY_DATASETS",
    "toy_names",
    "sample_toy",
    "gaussian",
    "eight_gaussians",
    "moons",
    "scurve",
    "moons_wide",
    "eight_gaussians_wide",
    "checkerboard",
    "circles",
    "swissroll",
    "pinwheel",
    "spirals",
]

_DTYPE = torch.float32


# --------------------------------------------------------------------------------------------
# Primitive draws (all through the optional generator)
# --------------------------------------------------------------------------------------------


def _device(generator: torch.Generator | None) -> torch.device:
    """Device on which to draw: the generator's device, else CPU."""
    return generator.device if generator is not None else torch.device("cpu")


def _randn(*shape: int, generator: torch.Generator | None) -> Tensor:
    """Standard normal draw of ``shape``."""
    return torch.randn(*shape, generator=generator, device=_device(generator), dtype=_DTYPE)


def _rand(*shape: int, generator: torch.Generator | None) -> Tensor:
    """Uniform draw on [0, 1) of ``shape``."""
    return torch.rand(*shape, generator=generator, device=_device(generator), dtype=_DTYPE)


def _randint(high: int, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` integers uniform on {0, ..., high - 1}."""
    return torch.randint(high, (n,), generator=generator, device=_device(generator))


def _shuffle_rows(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Rows of ``x`` in a uniformly random order."""
    perm = torch.randperm(x.shape[0], generator=generator, device=_device(generator))
    return x[perm.to(x.device)]


def _circle_centres(n_centres: int, radius: float, device: torch.device) -> Tensor:
    """``(n_centres, 2)`` points ``radius * (cos a_k, sin a_k)`` at ``a_k = 2 pi k / n_centres``."""
    angles = 2.0 * math.pi * torch.arange(n_centres, device=device, dtype=_DTYPE) / n_centres
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def _gaussian_mixture_on_circle(n: int, radius: float, std: float, generator: torch.Generator | None) -> Tensor:
    """``c_k + std * z``: ``k`` uniform on 8 centres on a circle of ``radius``, ``z ~ N(0, I)``."""
    centres = _circle_centres(8, radius, _device(generator))
    k = _randint(8, n, generator)
    return centres[k] + std * _randn(n, 2, generator=generator)


# --------------------------------------------------------------------------------------------
# scikit-learn parametrisations, re-implemented in torch
# --------------------------------------------------------------------------------------------


def _sk_moons(n: int, noise: float, generator: torch.Generator | None) -> Tensor:
    """scikit-learn ``make_moons(n, noise=noise, shuffle=True)`` in torch.

    Outer moon ``(cos s, sin s)``, inner moon ``(1 - cos s, 1 - sin s - 0.5)``, with ``s`` evenly
    spaced by ``linspace(0, pi, .)`` over ``n_out = n // 2`` and ``n_in = n - n_out`` points;
    rows shuffled, then ``N(0, noise^2)`` added to every coordinate.
    """
    n_out = n // 2
    n_in = n - n_out
    dev = _device(generator)
    s_out = torch.linspace(0.0, math.pi, n_out, device=dev, dtype=_DTYPE)
    s_in = torch.linspace(0.0, math.pi, n_in, device=dev, dtype=_DTYPE)
    outer = torch.stack([torch.cos(s_out), torch.sin(s_out)], dim=1)
    inner = torch.stack([1.0 - torch.cos(s_in), 1.0 - torch.sin(s_in) - 0.5], dim=1)
    x = _shuffle_rows(torch.cat([outer, inner], dim=0), generator)
    return x + noise * _randn(n, 2, generator=generator)


def _sk_s_curve(n: int, noise: float, generator: torch.Generator | None) -> Tensor:
    """scikit-learn ``make_s_curve(n, noise=noise)`` in torch, shape ``(n, 3)``.

    ``s = 3 pi (U - 0.5)``, ``x = sin s``, ``y = 2 U'``, ``z = sign(s) (cos s - 1)``, plus
    ``N(0, noise^2)`` on all three coordinates.
    """
    s = 3.0 * math.pi * (_rand(n, generator=generator) - 0.5)
    y = 2.0 * _rand(n, generator=generator)
    x = torch.stack([torch.sin(s), y, torch.sign(s) * (torch.cos(s) - 1.0)], dim=1)
    return x + noise * _randn(n, 3, generator=generator)


def _sk_circles(n: int, factor: float, noise: float, generator: torch.Generator | None) -> Tensor:
    """scikit-learn ``make_circles(n, factor=factor, noise=noise, shuffle=True)`` in torch.

    Outer circle of radius 1 on ``n_out = n // 2`` angles
    ``linspace(0, 2 pi, n_out, endpoint=False)``, inner circle of radius ``factor`` on
    ``n_in = n - n_out`` angles; rows shuffled, then ``N(0, noise^2)`` added.
    """
    n_out = n // 2
    n_in = n - n_out
    dev = _device(generator)
    a_out = 2.0 * math.pi * torch.arange(n_out, device=dev, dtype=_DTYPE) / max(n_out, 1)
    a_in = 2.0 * math.pi * torch.arange(n_in, device=dev, dtype=_DTYPE) / n_in
    outer = torch.stack([torch.cos(a_out), torch.sin(a_out)], dim=1)
    inner = factor * torch.stack([torch.cos(a_in), torch.sin(a_in)], dim=1)
    x = _shuffle_rows(torch.cat([outer, inner], dim=0), generator)
    return x + noise * _randn(n, 2, generator=generator)


def _sk_swiss_roll(n: int, noise: float, generator: torch.Generator | None) -> Tensor:
    """scikit-learn ``make_swiss_roll(n, noise=noise)`` in torch, shape ``(n, 3)``.

    ``t = 1.5 pi (1 + 2 U)``, ``(t cos t, 21 U', t sin t)`` plus ``N(0, noise^2)`` per coordinate.
    """
    t = 1.5 * math.pi * (1.0 + 2.0 * _rand(n, generator=generator))
    y = 21.0 * _rand(n, generator=generator)
    x = torch.stack([t * torch.cos(t), y, t * torch.sin(t)], dim=1)
    return x + noise * _randn(n, 3, generator=generator)


# --------------------------------------------------------------------------------------------
# The paper's 2D benchmark
# --------------------------------------------------------------------------------------------


def gaussian(n: int, *, dim: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal ``N(0, I_dim)``: the source of the N -> * tasks (Tong et al. 2024).

    Returns ``(n, dim)``.
    """
    return _randn(n, dim, generator=generator)


def eight_gaussians(
    n: int, *, radius: float = 5.0, std: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Eight Gaussians: target of N -> 8gaussians (Tong et al. TMLR 2024, Table 2).

    ``x = c_k + std * z + 1e-4 * z'`` with ``c_k = radius (cos 2 pi k / 8, sin 2 pi k / 8)``,
    ``k`` uniform on {0..7}, ``z, z' ~ N(0, I_2)``; defaults ``radius = 5``, ``std = 1`` as in the
    authors' experiment code (the extra ``N(0, 1e-4^2)`` noise is theirs too).
    """
    radius = check_positive_float("radius", radius)
    std = check_nonnegative_float("std", std)
    x = _gaussian_mixture_on_circle(n, radius, std, generator)
    return x + 1e-4 * _randn(n, 2, generator=generator)


def moons(n: int, *, noise: float = 0.05, generator: torch.Generator | None = None) -> Tensor:
    """Two moons: target of N -> moons (Tong et al. TMLR 2024, Table 2).

    scikit-learn ``make_moons(noise=0.05)`` (see ``_sk_moons``), multiplied by 2, then the first
    coordinate shifted by -1: ``x = 2 m + (-1, 0)``. ``noise = 0`` gives the noise-free curves.
    """
    noise = check_nonnegative_float("noise", noise)
    x = 2.0 * _sk_moons(n, noise, generator)
    x[:, 0] -= 1.0
    return x


def scurve(n: int, *, noise: float = 0.05, generator: torch.Generator | None = None) -> Tensor:
    """S-curve: target of N -> scurve (Tong et al. TMLR 2024, Table 2).

    scikit-learn ``make_s_curve(noise=0.05)`` (see ``_sk_s_curve``), coordinates ``(x, z)``,
    multiplied by 1.5.
    """
    noise = check_nonnegative_float("noise", noise)
    return 1.5 * _sk_s_curve(n, noise, generator)[:, [0, 2]]


def moons_wide(n: int, *, noise: float = 0.1, generator: torch.Generator | None = None) -> Tensor:
    """Wide moons: source of moons -> 8gaussians (Tong et al. TMLR 2024, Table 2).

    ``m = make_moons(noise=0.1)``, standardised by ONE scalar mean and ONE scalar (unbiased, as
    ``torch.Tensor.std``) standard deviation over all ``2 n`` coordinates of the drawn sample,
    times 7: ``x = 7 (m - mean(m)) / std(m)``. Needs ``n >= 2`` for the standard deviation.
    """
    noise = check_nonnegative_float("noise", noise)
    m = _sk_moons(n, noise, generator)
    return 7.0 * (m - m.mean()) / m.std()


def eight_gaussians_wide(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Wide eight Gaussians: target of moons -> 8gaussians (Tong et al. TMLR 2024, Table 2).

    ``x = 3 (4 u_k + 0.5 z)``: centres on a circle of radius 4 with ``N(0, 0.5^2)`` noise, all
    multiplied by 3 (radius 12, std 1.5), as in the authors' ``two_dim.py`` (after DSB).
    """
    return 3.0 * _gaussian_mixture_on_circle(n, 4.0, 0.5, generator)


# --------------------------------------------------------------------------------------------
# FFJORD toys (Grathwohl et al. 2019, lib/toy_data.py)
# --------------------------------------------------------------------------------------------


def checkerboard(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Checkerboard on [-4, 4]^2 (FFJORD ``checkerboard``).

    ``x1 = 4 U - 2``, ``x2 = U' - 2 B + (floor(x1) mod 2)`` with ``B ~ Bernoulli(1/2)``, all
    times 2: uniform on the 8 "black" unit squares of a 4 x 4 board, scaled to side 2.
    """
    x1 = 4.0 * _rand(n, generator=generator) - 2.0
    b = _randint(2, n, generator).to(_DTYPE)
    x2 = _rand(n, generator=generator) - 2.0 * b + torch.remainder(torch.floor(x1), 2.0)
    return 2.0 * torch.stack([x1, x2], dim=1)


def circles(n: int, *, noise: float = 0.08, generator: torch.Generator | None = None) -> Tensor:
    """Two concentric circles of radii 3 and 1.5 (FFJORD ``circles``).

    scikit-learn ``make_circles(factor=0.5, noise=0.08)`` (see ``_sk_circles``) times 3.
    """
    noise = check_nonnegative_float("noise", noise)
    return 3.0 * _sk_circles(n, 0.5, noise, generator)


def swissroll(n: int, *, noise: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Swiss roll (FFJORD ``swissroll``).

    scikit-learn ``make_swiss_roll(noise=1.0)`` (see ``_sk_swiss_roll``), coordinates ``(x, z)``,
    divided by 5 (radius up to about 2.8).
    """
    noise = check_nonnegative_float("noise", noise)
    return _sk_swiss_roll(n, noise, generator)[:, [0, 2]] / 5.0


def pinwheel(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Pinwheel with 5 arms (FFJORD ``pinwheel``).

    Features ``f = (1 + 0.3 z1, 0.1 z2)`` are rotated by ``a = 2 pi c / 5 + 0.25 exp(f_1)`` for
    arm ``c`` (arms balanced: ``c = i mod 5``, so any ``n`` is exact), ``x = 2 f R(a)`` with
    ``R(a) = [[cos a, -sin a], [sin a, cos a]]``, rows shuffled.
    """
    dev = _device(generator)
    f = _randn(n, 2, generator=generator) * torch.tensor([0.3, 0.1], device=dev, dtype=_DTYPE)
    f[:, 0] += 1.0
    arm = torch.arange(n, device=dev) % 5
    angles = 2.0 * math.pi * arm.to(_DTYPE) / 5.0 + 0.25 * torch.exp(f[:, 0])
    cos, sin = torch.cos(angles), torch.sin(angles)
    x = torch.stack([f[:, 0] * cos + f[:, 1] * sin, -f[:, 0] * sin + f[:, 1] * cos], dim=1)
    return 2.0 * _shuffle_rows(x, generator)


def spirals(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Two interleaved spirals (FFJORD ``2spirals``).

    ``r = sqrt(U) * 3 pi``; arm one ``(-r cos r + 0.5 U', r sin r + 0.5 U'')``, arm two its point
    reflection; all divided by 3, plus ``N(0, 0.1^2)``. Arm sizes ``n - n // 2`` and ``n // 2``.
    """
    r = torch.sqrt(_rand(n, generator=generator)) * 3.0 * math.pi
    arm = torch.stack(
        [
            -torch.cos(r) * r + 0.5 * _rand(n, generator=generator),
            torch.sin(r) * r + 0.5 * _rand(n, generator=generator),
        ],
        dim=1,
    )
    sign = torch.ones(n, 1, device=arm.device, dtype=_DTYPE)
    sign[n - n // 2 :] = -1.0
    return sign * arm / 3.0 + 0.1 * _randn(n, 2, generator=generator)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

TOY_DATASETS: dict[str, Callable[..., Tensor]] = {
    "gaussian": gaussian,
    "8gaussians": eight_gaussians,
    "moons": moons,
    "scurve": scurve,
    "moons-wide": moons_wide,
    "8gaussians-wide": eight_gaussians_wide,
    "checkerboard": checkerboard,
    "circles": circles,
    "swissroll": swissroll,
    "pinwheel": pinwheel,
    "spirals": spirals,
}
"""Name -> builder ``f(n, *, generator=None) -> (n, 2)`` (``gaussian`` also takes ``dim``)."""


def toy_names() -> list[str]:
    """Names of the built-in toy distributions, sorted."""
    return sorted(TOY_DATASETS)


def check_toy_dim(name: str, dim: object) -> int:
    """Validate ``dim`` for toy ``name``: any positive int for ``gaussian``, else exactly 2."""
    d = check_positive_int("dim", dim)
    if name != "gaussian" and d != 2:
        raise ValueError(f"dim must be 2 for the 2D dataset {name!r} (only 'gaussian' takes any dim), got {dim!r}")
    return d


def sample_toy(name: str, n: int, *, dim: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` points of the built-in toy distribution ``name``.

    Returns a float32 tensor of shape ``(n, 2)`` (``gaussian``: ``(n, dim)``). ``dim != 2`` is
    only allowed for ``gaussian``. See each builder's docstring for its parameters and source;
    ``moons-wide`` needs ``n >= 2`` (it standardises the sample by its own std).
    """
    check_choice("dataset", name, toy_names())
    n = check_positive_int("n", n)
    d = check_toy_dim(name, dim)
    if name == "moons-wide" and n < 2:
        raise ValueError(f"n must be >= 2 for 'moons-wide' (it is standardised by its own std), got {n}")
    if name == "gaussian":
        return gaussian(n, dim=d, generator=generator)
    return TOY_DATASETS[name](n, generator=generator)
