"""Tests of flowmatch.data: toy distributions (mathematics), file loading, splits, resolution."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from flowmatch.data import (
    TOY_DATASETS,
    DataSplit,
    Distribution,
    load_array,
    make_split,
    resolve_distribution,
    sample_toy,
    toy2d,
    toy_names,
    train_test_split,
)

PAPER_NAMES = ["gaussian", "8gaussians", "moons", "scurve", "moons-wide", "8gaussians-wide"]
FFJORD_NAMES = ["checkerboard", "circles", "swissroll", "pinwheel", "spirals"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def circle_centres(radius: float) -> torch.Tensor:
    a = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return radius * torch.stack([a.cos(), a.sin()], dim=1)


# --------------------------------------------------------------------------------------------
# Registry and reproducibility
# --------------------------------------------------------------------------------------------


def test_registry_lists_every_builtin():
    assert toy_names() == sorted(PAPER_NAMES + FFJORD_NAMES)
    assert set(TOY_DATASETS) == set(toy_names())
    for fn in TOY_DATASETS.values():
        assert fn.__doc__ and len(fn.__doc__) > 40


@pytest.mark.parametrize("name", sorted(PAPER_NAMES + FFJORD_NAMES))
def test_toy_reproducible_and_seed_dependent(name):
    a = sample_toy(name, 257, generator=gen(3))
    b = sample_toy(name, 257, generator=gen(3))
    c = sample_toy(name, 257, generator=gen(4))
    assert a.shape == (257, 2) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # the global RNG is not consulted when a generator is given
    torch.manual_seed(0)
    d = sample_toy(name, 257, generator=gen(3))
    torch.manual_seed(1)
    assert torch.equal(d, a)


@pytest.mark.parametrize("name", sorted(PAPER_NAMES + FFJORD_NAMES))
def test_toy_odd_sizes_are_exact(name):
    for n in (2, 3, 7):
        assert sample_toy(name, n, generator=gen()).shape == (n, 2)


# --------------------------------------------------------------------------------------------
# Paper distributions
# --------------------------------------------------------------------------------------------


def test_gaussian_any_dim_has_zero_mean_identity_covariance():
    x = sample_toy("gaussian", 20000, dim=5, generator=gen(1)).double()
    assert x.shape == (20000, 5)
    assert x.mean(0).abs().max() < 0.04
    cov = torch.cov(x.T)
    assert (cov - torch.eye(5, dtype=torch.float64)).abs().max() < 0.06


def _nearest_centre_stats(x: torch.Tensor, centres: torch.Tensor):
    d = torch.cdist(x.double(), centres)
    dist, k = d.min(dim=1)
    return (dist**2).mean().item(), torch.bincount(k, minlength=8).double() / len(k)


def test_8gaussians_centres_spread_and_uniform_weights():
    n = 8000
    x = sample_toy("8gaussians", n, generator=gen(2)).double()
    centres = circle_centres(5.0)
    ms, frac = _nearest_centre_stats(x, centres)
    # Reference: the same statistic for c_0 + z with known component, z ~ N(0, I_2). It is
    # E||z||^2 = 2 minus the tails that cross into a neighbour's cell (about 1.84 at radius 5).
    z = centres[0] + torch.randn(200000, 2, generator=gen(99), dtype=torch.float64)
    ms_ref, _ = _nearest_centre_stats(z, centres)
    assert 1.7 < ms_ref < 2.0
    assert abs(ms - ms_ref) < 0.1
    assert ((frac - 0.125).abs() < 0.03).all()
    # mixture moments: mean 0, covariance (R^2 / 2 + 1) I = 13.5 I
    assert x.mean(0).abs().max() < 0.2
    cov = torch.cov(x.T)
    assert abs(cov[0, 0] - 13.5) < 0.8 and abs(cov[1, 1] - 13.5) < 0.8 and abs(cov[0, 1]) < 0.6


def test_8gaussians_wide_radius_12_std_1p5():
    x = sample_toy("8gaussians-wide", 8000, generator=gen(5)).double()
    centres = circle_centres(12.0)
    ms, frac = _nearest_centre_stats(x, centres)
    # centres 9.2 apart with std 1.5: overlap negligible, so E||x - c_k||^2 = 2 * 1.5^2 = 4.5
    assert abs(ms - 4.5) < 0.25
    assert ((frac - 0.125).abs() < 0.03).all()
    assert abs(x.norm(dim=1).mean().item() - 12.0) < 0.2


def _undo_moons(x: torch.Tensor) -> torch.Tensor:
    """Invert the paper's map x = 2 m + (-1, 0)."""
    m = x.double().clone()
    m[:, 0] += 1.0
    return m / 2.0


def test_moons_noise_free_lies_on_two_half_circles():
    n = 1001
    m = _undo_moons(toy2d.moons(n, noise=0.0, generator=gen(6)))
    centre_in = torch.tensor([1.0, 0.5], dtype=torch.float64)
    # outer half circle: |m| = 1, y >= 0; inner: |m - (1, 0.5)| = 1, y <= 0.5
    outer = ((m.norm(dim=1) - 1).abs() < 1e-5) & (m[:, 1] >= -1e-6)
    inner = (((m - centre_in).norm(dim=1) - 1).abs() < 1e-5) & (m[:, 1] <= 0.5 + 1e-6)
    assert (outer ^ inner).all()  # every point on exactly one of the two arcs
    assert int(outer.sum()) == n // 2 and int(inner.sum()) == n - n // 2
    # positions evenly spaced along each half circle, as make_moons' linspace(0, pi, .)
    s_out = torch.atan2(m[outer, 1].clamp(min=0), m[outer, 0]).sort().values
    expected = torch.linspace(0, math.pi, n // 2, dtype=torch.float64)
    assert (s_out - expected).abs().max() < 1e-5
    s_in = torch.atan2((0.5 - m[inner, 1]).clamp(min=0), 1 - m[inner, 0]).sort().values
    expected = torch.linspace(0, math.pi, n - n // 2, dtype=torch.float64)
    assert (s_in - expected).abs().max() < 1e-5


def test_moons_mean_and_noise_level():
    x = sample_toy("moons", 20000, generator=gen(7)).double()
    # mean of make_moons is (0.5, 0.25); after 2 m - (1, 0) it is (0, 0.5)
    assert x.mean(0).sub(torch.tensor([0.0, 0.5], dtype=torch.float64)).abs().max() < 0.02
    m = _undo_moons(x)
    r_out = m.norm(dim=1) - 1
    r_in = (m - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1) - 1
    resid = torch.where(r_out.abs() < r_in.abs(), r_out, r_in)
    # radial residual of N(0, 0.05^2 I) noise about a unit circle: std ~ 0.05
    assert abs(resid.std().item() - 0.05) < 0.005
    assert abs(resid.mean().item()) < 0.005


def test_moons_is_affine_image_of_make_moons():
    m = toy2d._sk_moons(500, 0.05, gen(8))
    x = sample_toy("moons", 500, generator=gen(8))
    torch.testing.assert_close(x, 2 * m - torch.tensor([1.0, 0.0]))


def test_scurve_range_and_noise_free_structure():
    x = toy2d.scurve(4000, noise=0.0, generator=gen(9)).double() / 1.5
    # x = sin s, z = sign(s)(cos s - 1): each point lies on the unit circle centred at
    # (0, -1) (s > 0) or (0, 1) (s < 0)
    up = (x - torch.tensor([0.0, -1.0], dtype=torch.float64)).norm(dim=1)
    down = (x - torch.tensor([0.0, 1.0], dtype=torch.float64)).norm(dim=1)
    assert torch.minimum((up - 1).abs(), (down - 1).abs()).max() < 1e-5
    assert x[:, 0].abs().max() <= 1 + 1e-6 and x[:, 1].abs().max() <= 2 + 1e-6
    y = sample_toy("scurve", 4000, generator=gen(10))
    # range: |x| <= 1.5, |z| <= 3 up to the noise 1.5 * 0.05 (5 sigma), and nearly reached
    assert y[:, 0].abs().max() < 1.5 + 0.4 and y[:, 1].abs().max() < 3.0 + 0.4
    assert y[:, 0].abs().max() > 1.4 and y[:, 1].abs().max() > 2.8
    assert y.mean(0).abs().max() < 0.1


def test_moons_wide_is_standardised_by_scalars():
    x = sample_toy("moons-wide", 3000, generator=gen(11)).double() / 7
    assert abs(x.mean().item()) < 1e-6
    assert abs(x.std().item() - 1) < 1e-5
    # a scalar (not per-coordinate) standardisation keeps the moons' aspect: the two
    # coordinate means differ and the per-coordinate stds differ
    assert abs(x[:, 0].mean() - x[:, 1].mean()) > 0.2
    assert abs(x[:, 0].std() - x[:, 1].std()) > 0.3
    m = toy2d._sk_moons(3000, 0.1, gen(11))
    torch.testing.assert_close(x.float(), (m - m.mean()) / m.std(), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# FFJORD toys
# --------------------------------------------------------------------------------------------


def test_checkerboard_only_black_squares_uniformly():
    x = sample_toy("checkerboard", 8000, generator=gen(12))
    assert x.abs().max() <= 4.0
    cells = torch.floor(x / 2).long() + 2  # 4 x 4 board of side-2 squares, indices 0..3
    assert ((cells.sum(dim=1)) % 2 == 0).all()
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).double() / len(x)
    black = counts[counts > 0]
    assert len(black) == 8 and ((black - 0.125).abs() < 0.03).all()


def test_circles_noise_free_radii():
    x = toy2d.circles(1001, noise=0.0, generator=gen(13)).double()
    r = x.norm(dim=1)
    outer = r > 2.25
    assert (r[outer] - 3).abs().max() < 1e-5 and (r[~outer] - 1.5).abs().max() < 1e-5
    assert int(outer.sum()) == 500


def test_swissroll_noise_free_radius_matches_angle():
    x = toy2d.swissroll(2000, noise=0.0, generator=gen(14)).double() * 5
    t = x.norm(dim=1)  # (t cos t, t sin t)
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    torch.testing.assert_close(x[:, 0], t * torch.cos(t), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x[:, 1], t * torch.sin(t), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["pinwheel", "spirals", "circles", "checkerboard"])
def test_symmetric_ffjord_toys_centred_in_box(name):
    x = sample_toy(name, 5000, generator=gen(15))
    assert x.abs().max() < 4.5
    assert x.mean(0).abs().max() < 0.15


def test_spirals_are_point_reflections():
    x = sample_toy("spirals", 4000, generator=gen(16)).double()
    # arm two is -arm one: the radius distributions of the halves match, means are opposite
    a, b = x[:2000], x[2000:]
    assert abs(a.norm(dim=1).mean() - b.norm(dim=1).mean()) < 0.1
    torch.testing.assert_close(a.mean(0), -b.mean(0), atol=0.1, rtol=0)


# --------------------------------------------------------------------------------------------
# sample_toy errors
# --------------------------------------------------------------------------------------------


def test_sample_toy_errors_name_the_value():
    with pytest.raises(ValueError, match="nosuch.*moons"):
        sample_toy("nosuch", 10)
    with pytest.raises(ValueError, match="dim.*3"):
        sample_toy("moons", 10, dim=3)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        sample_toy("moons", 0)
    with pytest.raises(ValueError, match="2.5"):
        sample_toy("gaussian", 2.5)
    with pytest.raises(ValueError, match="dim"):
        sample_toy("gaussian", 4, dim=0)
    with pytest.raises(ValueError, match="moons-wide"):
        sample_toy("moons-wide", 1)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


@pytest.fixture
def arr() -> np.ndarray:
    return np.arange(24, dtype=np.float64).reshape(8, 3) / 7


def test_load_npy_round_trip(tmp_path: Path, arr):
    p = tmp_path / "a.npy"
    np.save(p, arr)
    x = load_array(p)
    assert x.dtype == torch.float32 and x.shape == (8, 3)
    torch.testing.assert_close(x, torch.from_numpy(arr).float())
    np.save(tmp_path / "i.npy", np.arange(6).reshape(3, 2))
    assert load_array(str(tmp_path / "i.npy")).dtype == torch.float32


def test_load_npz_single_and_key(tmp_path: Path, arr):
    np.savez(tmp_path / "one.npz", data=arr)
    torch.testing.assert_close(load_array(tmp_path / "one.npz"), torch.from_numpy(arr).float())
    np.savez(tmp_path / "two.npz", first=arr, second=arr[:2] + 1)
    x = load_array(f"{tmp_path / 'two.npz'}:second")
    torch.testing.assert_close(x, torch.from_numpy(arr[:2] + 1).float())
    with pytest.raises(ValueError, match="'first', 'second'"):
        load_array(tmp_path / "two.npz")
    with pytest.raises(ValueError, match="'third'.*'first', 'second'"):
        load_array(f"{tmp_path / 'two.npz'}:third")


def test_load_csv_with_and_without_header(tmp_path: Path):
    (tmp_path / "h.csv").write_text("x, y\n1.5,2\n-3e-1, 4\n\n")
    (tmp_path / "n.csv").write_text("1.5,2\n-0.3,4\n")
    expected = torch.tensor([[1.5, 2.0], [-0.3, 4.0]])
    torch.testing.assert_close(load_array(tmp_path / "h.csv"), expected)
    torch.testing.assert_close(load_array(tmp_path / "n.csv"), expected)
    (tmp_path / "c.csv").write_text("v\n1\n2\n3\n")
    assert load_array(tmp_path / "c.csv").shape == (3, 1)


def test_load_pt_tensor_dict_and_key(tmp_path: Path, arr):
    t = torch.from_numpy(arr)
    torch.save(t, tmp_path / "t.pt")
    torch.testing.assert_close(load_array(tmp_path / "t.pt"), t.float())
    torch.save({"x": t, "meta": 3}, tmp_path / "d.pth")
    torch.testing.assert_close(load_array(tmp_path / "d.pth"), t.float())
    torch.save({"x": t, "y": t[:3] * 2}, tmp_path / "k.pt")
    torch.testing.assert_close(load_array(f"{tmp_path / 'k.pt'}:y"), (t[:3] * 2).float())
    with pytest.raises(ValueError, match="'x', 'y'"):
        load_array(tmp_path / "k.pt")


def test_load_errors_name_rule_and_value(tmp_path: Path):
    missing = tmp_path / "missing.npy"
    with pytest.raises(ValueError, match="must exist.*missing.npy"):
        load_array(missing)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="must not be empty.*empty.csv"):
        load_array(tmp_path / "empty.csv")
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"extension.*'\.txt'"):
        load_array(tmp_path / "data.txt")
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(ValueError, match=r"2-D.*\(5,\).*reshape"):
        load_array(tmp_path / "flat.npy")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"2-D.*\(2, 2, 2\)"):
        load_array(tmp_path / "cube.npy")
    np.save(tmp_path / "none.npy", np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"N >= 1.*\(0, 2\)"):
        load_array(tmp_path / "none.npy")
    bad = np.ones((4, 2))
    bad[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"nan\.npy.*finite.*\(2, 1\)"):
        load_array(tmp_path / "nan.npy")
    (tmp_path / "bad.csv").write_text("1,2\n3,abc\n")
    with pytest.raises(ValueError, match="malformed csv file.*line 2.*'abc'"):
        load_array(tmp_path / "bad.csv")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="malformed csv file.*line 2 has 1 fields"):
        load_array(tmp_path / "ragged.csv")
    (tmp_path / "junk.npy").write_bytes(b"not an array at all")
    with pytest.raises(ValueError, match="malformed npy file.*junk.npy"):
        load_array(tmp_path / "junk.npy")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="malformed pt file.*junk.pt"):
        load_array(tmp_path / "junk.pt")
    (tmp_path / "ok.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="only allowed.*key 'k'"):
        load_array(f"{tmp_path / 'ok.csv'}:k")


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def test_train_test_split_sizes_disjoint_reproducible():
    x = torch.arange(100.0).reshape(50, 2)
    s = train_test_split(x, test_size=0.2, generator=gen(1))
    assert isinstance(s, DataSplit) and len(s.test) == 10 and len(s.train) == 40
    rows = torch.cat([s.train, s.test])[:, 0].long().tolist()
    assert sorted(rows) == list(range(0, 100, 2))  # disjoint, and together all rows
    s2 = train_test_split(x, test_size=0.2, generator=gen(1))
    assert torch.equal(s.train, s2.train) and torch.equal(s.test, s2.test)
    s3 = train_test_split(x, test_size=0.2, generator=gen(2))
    assert not torch.equal(s.test, s3.test)
    assert len(train_test_split(x, test_size=7, generator=gen(1)).test) == 7
    assert len(train_test_split(x, test_size=0.01, generator=gen(1)).test) == 1  # ceil


@pytest.mark.parametrize("bad", [0, 50, 51, 0.0, 1.0, 1.5, -0.1, True, "0.2"])
def test_train_test_split_rejects_empty_parts(bad):
    with pytest.raises(ValueError, match=repr(bad).replace(".", r"\.")):
        train_test_split(torch.zeros(50, 2), test_size=bad)


# --------------------------------------------------------------------------------------------
# Distribution, resolve_distribution, make_split
# --------------------------------------------------------------------------------------------


def test_resolve_builtin():
    d = resolve_distribution("moons")
    assert d.name == "moons" and d.dim == 2 and d.is_builtin and not d.finite and d.size is None
    torch.testing.assert_close(d.sample(64, gen(3)), sample_toy("moons", 64, generator=gen(3)))
    g = resolve_distribution("gaussian", dim=7)
    assert g.dim == 7 and g.sample(5, gen()).shape == (5, 7)
    assert resolve_distribution("scurve", dim=2).dim == 2
    with pytest.raises(ValueError, match="dim.*3"):
        resolve_distribution("moons", dim=3)


def test_resolve_unknown_and_missing(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown dataset 'mooons'.*8gaussians.*npy"):
        resolve_distribution("mooons")
    with pytest.raises(ValueError, match="must exist.*nothere.npz"):
        resolve_distribution(str(tmp_path / "nothere.npz"))


def test_file_distribution_draws_distinct_rows(tmp_path: Path):
    data = np.stack([np.arange(30.0), -np.arange(30.0)], axis=1)
    np.save(tmp_path / "rows.npy", data)
    d = resolve_distribution(str(tmp_path / "rows.npy"))
    assert not d.is_builtin and d.finite and d.size == 30 and d.dim == 2
    x = d.sample(20, gen(4))
    ids = x[:, 0].long()
    assert len(set(ids.tolist())) == 20  # without replacement
    assert torch.equal(x[:, 1], -x[:, 0])  # whole rows of the file
    assert torch.equal(x, d.sample(20, gen(4)))
    assert sorted(d.sample(30, gen(5))[:, 0].long().tolist()) == list(range(30))
    with pytest.raises(ValueError, match="cannot draw n=31 rows without replacement.*30 rows"):
        d.sample(31)
    with pytest.raises(ValueError, match="dim=3"):
        resolve_distribution(str(tmp_path / "rows.npy"), dim=3)
    # a Gaussian source matching a D-dimensional file target
    assert resolve_distribution("gaussian", dim=d.dim).sample(4, gen()).shape == (4, 2)


def test_make_split_builtin_one_draw_split_at_random():
    d = resolve_distribution("8gaussians")
    s = make_split(d, n_train=300, n_test=100, generator=gen(6))
    assert s.train.shape == (300, 2) and s.test.shape == (100, 2)
    s2 = make_split(d, n_train=300, n_test=100, generator=gen(6))
    assert torch.equal(s.train, s2.train) and torch.equal(s.test, s2.test)
    both = torch.cat([s.train, s.test])
    assert torch.unique(both, dim=0).shape[0] == 400


def test_make_split_file_uses_all_rows(tmp_path: Path):
    np.save(tmp_path / "f.npy", np.arange(40.0).reshape(20, 2))
    d = resolve_distribution(str(tmp_path / "f.npy"))
    s = make_split(d, n_train=1000, n_test=5, generator=gen(7))  # n_train ignored for files
    assert s.test.shape == (5, 2) and s.train.shape == (15, 2)
    rows = torch.cat([s.train, s.test])[:, 0].long().tolist()
    assert sorted(rows) == list(range(0, 40, 2))
    with pytest.raises(ValueError, match="n_test.*20 rows.*n_test=20"):
        make_split(d, n_train=1, n_test=20)


def test_from_tensor_matches_file_semantics():
    d = Distribution.from_tensor(torch.arange(10.0).reshape(5, 2), name="mem")
    assert d.finite and d.size == 5 and d.name == "mem"
    with pytest.raises(ValueError, match="cannot draw n=6"):
        d.sample(6)
