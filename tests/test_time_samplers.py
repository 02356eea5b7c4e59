"""Time samplers (issue 18, item 4): each law's draws pass a KS test against its cdf, and each cdf is
checked on its own against a closed form or a Monte Carlo of the defining formula written here, so a
wrong cdf cannot pass together with a wrong sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from flowmatch.objectives import (
    CallableTime,
    FlowMatcher,
    LogitNormalTime,
    ModeTime,
    ShiftedTime,
    TimeSampler,
    UniformTime,
    cfm,
    parse_time_sampler,
    resolution_shift,
    time_sampler_names,
    time_samplers,
)
from flowmatch.paths import BrownianBridgePath, LinearPath

N = 20_000
GRID = np.linspace(0.0, 1.0, 201)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def squared_uniform(n, generator=None, device=None, dtype=None):
    """u = v^2, v ~ U[0, 1]: P(u <= x) = sqrt(x)."""
    return torch.rand(n, generator=generator, device=device, dtype=dtype) ** 2


SAMPLERS = [
    UniformTime(),
    LogitNormalTime(),
    LogitNormalTime(0.8, 0.5),
    LogitNormalTime(-1.5, 2.0),
    ShiftedTime(3.0),
    ShiftedTime(0.3),
    ShiftedTime(2.0, LogitNormalTime(0.5, 1.0)),
    ShiftedTime(3.0, ModeTime(1.29)),
    ModeTime(),
    ModeTime(-1.0),
    ModeTime(0.5),
    ModeTime(2.0 / (math.pi - 2.0)),
    CallableTime(squared_uniform, cdf=torch.sqrt),
]


def numpy_cdf(sampler: TimeSampler):
    return lambda x: sampler.cdf(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def unit_draws(sampler: TimeSampler, n: int = N, seed: int = 0) -> np.ndarray:
    return sampler.sample_unit(n, generator=gen(seed)).double().numpy()


def sd3_shift(u: np.ndarray, a: float) -> np.ndarray:
    """SD3's shift written for the noise level s = 1 - u: s' = a s / (1 + (a - 1) s), u' = 1 - s'."""
    s = 1.0 - u
    return 1.0 - a * s / (1.0 + (a - 1.0) * s)


def sd3_mode(v: np.ndarray, scale: float) -> np.ndarray:
    """SD3's f_mode for the noise level, s = 1 - v - scale (cos^2(pi v / 2) - 1 + v); u = 1 - s."""
    return 1.0 - (1.0 - v - scale * (np.cos(np.pi * v / 2) ** 2 - 1.0 + v))


def ecdf(samples: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(samples), x, side="right") / len(samples)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_unit_draws_pass_a_ks_test_against_the_cdf(sampler):
    assert stats.kstest(unit_draws(sampler), numpy_cdf(sampler)).pvalue > 1e-3


@pytest.mark.parametrize(
    "sampler, wrong",
    [
        (LogitNormalTime(0.0, 1.0), LogitNormalTime(0.1, 1.0)),
        (LogitNormalTime(0.0, 1.0), LogitNormalTime(0.0, 1.1)),
        (ShiftedTime(3.0), ShiftedTime(2.7)),
        (ModeTime(1.29), ModeTime(1.0)),
        (UniformTime(), ModeTime(0.3)),
    ],
    ids=repr,
)
def test_the_ks_test_rejects_a_slightly_wrong_law(sampler, wrong):
    assert stats.kstest(unit_draws(sampler), numpy_cdf(wrong)).pvalue < 1e-6


def test_uniform_cdf_is_the_identity():
    np.testing.assert_allclose(numpy_cdf(UniformTime())(GRID), GRID, rtol=0, atol=0)
    assert numpy_cdf(UniformTime())(np.array([-0.5, 1.5])).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.8, 0.5), (-1.5, 2.0)])
def test_logit_normal_cdf_is_the_normal_cdf_of_the_logit_and_draws_follow_the_formula(mean, std):
    x = GRID[1:-1]
    expected = stats.norm.cdf((np.log(x / (1 - x)) - mean) / std)
    sampler = LogitNormalTime(mean, std)
    np.testing.assert_allclose(numpy_cdf(sampler)(x), expected, rtol=1e-12, atol=1e-14)
    assert numpy_cdf(sampler)(np.array([0.0, 1.0])).tolist() == [0.0, 1.0]
    z = torch.randn(N, generator=gen(3)).double().numpy()
    np.testing.assert_allclose(unit_draws(sampler, seed=3), 1 / (1 + np.exp(-(mean + std * z))), atol=1e-6)


@pytest.mark.parametrize("shift", [3.0, 0.3, 1.0])
def test_shifted_draws_follow_the_sd3_formula_and_the_median_is_the_shift_of_one_half(shift):
    sampler = ShiftedTime(shift)
    v = torch.rand(N, generator=gen(5)).double().numpy()
    np.testing.assert_allclose(unit_draws(sampler, seed=5), sd3_shift(v, shift), atol=1e-6)
    median = sd3_shift(np.array(0.5), shift)
    assert float(sampler.cdf(torch.tensor(float(median), dtype=torch.float64))) == pytest.approx(0.5, abs=1e-12)
    assert np.median(unit_draws(sampler)) == pytest.approx(median, abs=0.01)


@pytest.mark.parametrize(
    "sampler, base_draw",
    [
        (ShiftedTime(3.0), lambda g: torch.rand(200_000, generator=g, dtype=torch.float64)),
        (ShiftedTime(0.4), lambda g: torch.rand(200_000, generator=g, dtype=torch.float64)),
        (ShiftedTime(2.0, LogitNormalTime(0.5, 1.0)), lambda g: torch.sigmoid(0.5 + torch.randn(200_000, generator=g))),
    ],
    ids=lambda x: repr(x) if isinstance(x, TimeSampler) else "",
)
def test_shifted_cdf_matches_a_monte_carlo_of_the_defining_shift(sampler, base_draw):
    """DKW: the empirical cdf of 200000 draws is within 0.01 of the true one but with prob. 2e-17."""
    u = sd3_shift(base_draw(gen(7)).double().numpy(), sampler.shift)
    np.testing.assert_allclose(numpy_cdf(sampler)(GRID), ecdf(u, GRID), atol=0.01)


@pytest.mark.parametrize("scale, atol", [(1.29, 1e-10), (-1.0, 1e-10), (0.5, 1e-10), (2.0 / (math.pi - 2.0), 1e-5)])
def test_mode_cdf_inverts_the_defining_map_and_draws_follow_it(scale, atol):
    """F(f(v)) = v; at the largest scale f is flat (cubic) at v = 1/2, so there float64 rounding of
    u = f(v) alone moves v by ~1e-6 and only the residual f(F(u)) = u is tight."""
    sampler = ModeTime(scale)
    u = sd3_mode(GRID, scale)
    v = numpy_cdf(sampler)(u)
    np.testing.assert_allclose(v, GRID, rtol=0, atol=atol)
    np.testing.assert_allclose(sd3_mode(v, scale), u, rtol=0, atol=1e-12)
    v = torch.rand(N, generator=gen(11)).double().numpy()
    np.testing.assert_allclose(unit_draws(sampler, seed=11), sd3_mode(v, scale), atol=1e-6)


def test_mode_scale_bound_is_where_the_map_stops_being_monotone():
    v = np.linspace(0.0, 1.0, 100_001)
    lo, hi = -1.0, 2.0 / (math.pi - 2.0)
    assert (np.diff(sd3_mode(v, lo)) >= 0).all() and (np.diff(sd3_mode(v, hi)) >= -1e-15).all()
    assert (np.diff(sd3_mode(v, lo - 0.05)) < 0).any() and (np.diff(sd3_mode(v, hi + 0.05)) < 0).any()
    ModeTime(lo), ModeTime(hi)
    for bad in (lo - 0.05, hi + 0.05):
        with pytest.raises(ValueError, match=r"ModeTime scale must lie in \[-1, 2/\(pi - 2\)\]"):
            ModeTime(bad)


def test_callable_time_cdf_is_the_given_one_and_draws_are_the_functions():
    sampler = CallableTime(squared_uniform, cdf=torch.sqrt)
    np.testing.assert_allclose(numpy_cdf(sampler)(GRID), np.sqrt(GRID), rtol=1e-15)
    assert torch.equal(sampler.sample_unit(100, generator=gen(2)), torch.rand(100, generator=gen(2)) ** 2)
    with pytest.raises(NotImplementedError, match="pass cdf="):
        CallableTime(squared_uniform).cdf(torch.tensor([0.5]))


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_draws_are_mapped_affinely_onto_the_path_interval(sampler):
    path = BrownianBridgePath(1.0, t_eps=0.1)
    assert path.t_range == (0.1, 0.9)
    t = sampler(N, path, generator=gen(0))
    assert t.shape == (N,) and t.dtype == torch.float32
    assert t.min() >= torch.tensor(0.1) and t.max() <= torch.tensor(0.9)  # the ends as float32 holds them
    torch.testing.assert_close(t, 0.1 + 0.8 * sampler.sample_unit(N, generator=gen(0)))
    cdf = numpy_cdf(sampler)
    assert stats.kstest(t.double().numpy(), lambda x: cdf((x - 0.1) / 0.8)).pvalue > 1e-3


@pytest.mark.parametrize("sampler", SAMPLERS, ids=repr)
def test_draws_depend_on_the_generator_only(sampler):
    path = LinearPath(0.1)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = sampler(500, path, generator=gen(0)), sampler(500, path, generator=gen(0))
    c = sampler(500, path, generator=gen(1))
    assert torch.equal(torch.get_rng_state(), state), "the global RNG was read"
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "sampler, path",
    [
        (UniformTime(), LinearPath(0.1)),
        (UniformTime(), BrownianBridgePath(1.0, t_eps=0.1)),
        (UniformTime(0.2, 0.4), LinearPath(0.1)),
        (UniformTime(0.05, 0.5), BrownianBridgePath(1.0, t_eps=0.1)),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_time_draws_are_bit_identical_to_torch_rand(sampler, path, dtype):
    lo = max(path.t_range[0], sampler.low or 0.0)
    hi = min(path.t_range[1], 1.0 if sampler.high is None else sampler.high)
    expected = lo + (hi - lo) * torch.rand(1000, generator=gen(4), dtype=dtype)
    assert torch.equal(sampler(1000, path, dtype=dtype, generator=gen(4)), expected)


def test_uniform_time_still_lives_in_cfm_and_is_the_flow_matchers_default():
    assert cfm.UniformTime is time_samplers.UniformTime is UniformTime
    assert isinstance(FlowMatcher(LinearPath(0.1)).time_sampler, UniformTime)


def test_flow_matcher_draws_t_from_the_given_sampler():
    path = BrownianBridgePath(1.0, t_eps=0.1)
    sampler = ShiftedTime(3.0, LogitNormalTime())
    fm = FlowMatcher(path, time_sampler=sampler)
    s = fm.sample(torch.randn(64, 2, generator=gen(0)), torch.randn(64, 2, generator=gen(1)), generator=gen(2))
    assert torch.equal(s.t, sampler(64, path, generator=gen(2)))


def test_resolution_shift_interpolates_mu_linearly():
    assert resolution_shift(256) == pytest.approx(math.exp(0.5), rel=1e-15)
    assert resolution_shift(4096) == pytest.approx(math.exp(1.15), rel=1e-15)
    assert resolution_shift((256 + 4096) / 2) == pytest.approx(math.exp(0.825), rel=1e-15)
    assert resolution_shift(8192) == pytest.approx(math.exp(0.5 + 0.65 * (8192 - 256) / 3840), rel=1e-15)
    kw = dict(base_tokens=100, max_tokens=200, base_shift=0.0, max_shift=1.0)
    assert resolution_shift(150, **kw) == pytest.approx(math.exp(0.5), rel=1e-15)
    s = ShiftedTime.for_resolution(4096)
    assert s.shift == resolution_shift(4096) and isinstance(s.base, UniformTime)
    assert isinstance(ShiftedTime.for_resolution(150, LogitNormalTime(), **kw).base, LogitNormalTime)


def one_line_error(fn, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def bad_fn(out):
    return CallableTime(lambda n, generator=None, device=None, dtype=None: out).sample_unit(3)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda: LogitNormalTime(std=0.0), "std must be a finite number > 0, got 0.0"),
        (lambda: LogitNormalTime(std=-1.0), "std must be a finite number > 0, got -1.0"),
        (lambda: LogitNormalTime(mean=math.inf), "mean must be a finite number, got inf"),
        (lambda: ShiftedTime(0.0), "shift must be a finite number > 0, got 0.0"),
        (lambda: ShiftedTime(-2.0), "shift must be a finite number > 0, got -2.0"),
        (lambda: ShiftedTime(math.nan), "shift must be a finite number > 0, got nan"),
        (lambda: ShiftedTime(2.0, UniformTime(0.2, 0.5)), "whole unit interval"),
        (lambda: ModeTime(1.8), r"scale must lie in .* got 1.8"),
        (lambda: ModeTime(-1.01), r"scale must lie in .* got -1.01"),
        (lambda: bad_fn(torch.rand(3, 1)), r"shape \(n,\) = \(3,\), got \(3, 1\)"),
        (lambda: bad_fn(torch.rand(4)), r"shape \(n,\) = \(3,\), got \(4,\)"),
        (lambda: bad_fn(torch.tensor([0.5, 1.5, 0.2])), r"values in \[0, 1\], got 1.5 at index 1"),
        (lambda: bad_fn(torch.tensor([-0.1, 0.5, 0.2])), r"values in \[0, 1\], got -0.1\d* at index 0"),
        (lambda: bad_fn(torch.tensor([0.1, 0.5, math.nan])), r"values in \[0, 1\], got nan at index 2"),
        (lambda: bad_fn([0.1, 0.2, 0.3]), "must return a torch.Tensor, got list"),
        (lambda: resolution_shift(0), "n_tokens must be a finite number > 0, got 0"),
        (lambda: resolution_shift(10, base_tokens=400, max_tokens=300), "base_tokens < max_tokens"),
        (lambda: UniformTime()(-1, LinearPath(0.1)), "must be an integer >= 0, got -1"),
        (
            lambda: UniformTime(0.95)(3, BrownianBridgePath(1.0, t_eps=0.1)),
            r"must meet the path's t_range \(0.1, 0.9\)",
        ),
    ],
)
def test_bad_parameters_raise_a_one_line_value_error(fn, match):
    one_line_error(fn, match)


def test_shifted_time_base_must_be_a_time_sampler():
    with pytest.raises(TypeError, match="base must be a TimeSampler, got str"):
        ShiftedTime(2.0, "uniform")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("uniform", UniformTime()),
        ("logit-normal", LogitNormalTime()),
        ("logit-normal:-0.5,2", LogitNormalTime(-0.5, 2.0)),
        (" shift:3 ", ShiftedTime(3.0)),
        ("shift:0.5:logit-normal:0.5,1.5", ShiftedTime(0.5, LogitNormalTime(0.5, 1.5))),
        ("shift:2:mode:0.7", ShiftedTime(2.0, ModeTime(0.7))),
        ("mode", ModeTime()),
        ("mode:-0.25", ModeTime(-0.25)),
    ],
)
def test_parse_time_sampler_builds_the_named_sampler(spec, expected):
    sampler = parse_time_sampler(spec)
    assert repr(sampler) == repr(expected)
    assert torch.equal(sampler.sample_unit(200, generator=gen(9)), expected.sample_unit(200, generator=gen(9)))


def test_parsed_reprs_name_the_parameters():
    assert repr(parse_time_sampler("logit-normal:-0.5,2")) == "LogitNormalTime(mean=-0.5, std=2.0)"
    assert repr(parse_time_sampler("shift:3")) == "ShiftedTime(shift=3.0, base=UniformTime(low=None, high=None))"
    assert repr(parse_time_sampler("mode:0.5")) == "ModeTime(scale=0.5)"
    assert time_sampler_names() == ["logit-normal", "mode", "shift", "uniform"]


@pytest.mark.parametrize(
    "spec",
    ["beta", "uniform:1", "logit-normal:1", "logit-normal:1,2,3", "shift", "shift:", "shift:3:", "shift:2:shift:3"],
)
def test_parse_time_sampler_lists_the_valid_forms_for_unknown_specs(spec):
    one_line_error(
        lambda: parse_time_sampler(spec), "valid forms: uniform, logit-normal, logit-normal:MEAN,STD, shift:S"
    )


@pytest.mark.parametrize(
    "spec, match",
    [
        ("mode:x", "needs a number, got 'x'"),
        ("shift:big", "needs a number, got 'big'"),
        ("logit-normal:0,0", "std must be a finite number > 0, got 0.0"),
        ("shift:-1", "shift must be a finite number > 0, got -1.0"),
        ("mode:3", r"scale must lie in .* got 3.0"),
    ],
)
def test_parse_time_sampler_checks_the_parameters(spec, match):
    one_line_error(lambda: parse_time_sampler(spec), match)
