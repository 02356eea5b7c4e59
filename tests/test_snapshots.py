"""Snapshot data: the format (.npz / .csv), grouping by time, holdouts, and the synthetic course."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowmatch.data.snapshots import Snapshots, bifurcation_course, bifurcation_drift, load_snapshots, save_snapshots
from flowmatch.metrics import w1
from flowmatch.trajectory.inference import baseline_holdout_w1


def _labelled(seed: int = 0):
    g = np.random.default_rng(seed)
    t = np.array([3.0, 0.0, 1.5, 0.0, 3.0, 1.5, 1.5, 0.0])
    x = g.normal(size=(8, 3)).astype(np.float32)
    return x, t


def test_rows_are_grouped_by_time_and_the_times_sorted():
    x, t = _labelled()
    s = Snapshots.from_labelled(x, t)
    assert s.times.tolist() == [0.0, 1.5, 3.0]
    assert s.sizes == (3, 3, 2) and s.dim == 3
    for k, tk in enumerate(s.times.tolist()):
        np.testing.assert_array_equal(s.populations[k].numpy(), x[t == tk])


@pytest.mark.parametrize("ext", [".npz", ".csv"])
def test_file_round_trip(tmp_path, ext):
    s = Snapshots.from_labelled(*_labelled())
    path = save_snapshots(s, tmp_path / f"course{ext}")
    back = load_snapshots(path)
    assert back.times.tolist() == s.times.tolist()
    for a, b in zip(s.populations, back.populations):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_csv_time_column_anywhere_and_named_time_in_any_case(tmp_path):
    p = tmp_path / "pca.csv"
    p.write_text("PC1,Time,PC2\n1,0,2\n3,5,4\n5,0,6\n")
    s = load_snapshots(p)
    assert s.times.tolist() == [0.0, 5.0]
    np.testing.assert_array_equal(s.populations[0].numpy(), [[1, 2], [5, 6]])
    np.testing.assert_array_equal(s.populations[1].numpy(), [[3, 4]])


def test_npz_accepts_time_for_t(tmp_path):
    x, t = _labelled()
    np.savez(tmp_path / "a.npz", x=x, time=t)
    assert load_snapshots(tmp_path / "a.npz").sizes == (3, 3, 2)


def test_without_removes_exactly_that_time_point():
    s = Snapshots.from_labelled(*_labelled())
    r = s.without(1)
    assert r.times.tolist() == [0.0, 3.0]
    assert r.populations[0] is s.populations[0] and r.populations[1] is s.populations[2]


@pytest.mark.parametrize(
    "make, parts",
    [
        (
            lambda p: np.savez(p / "one.npz", x=np.ones((4, 2)), t=np.zeros(4)),
            ["at least 2 distinct time points", "got 1"],
        ),
        (lambda p: (p / "nt.csv").write_text("a,b\n1,2\n3,4\n"), ["time column named 't' or 'time'", "['a', 'b']"]),
        (
            lambda p: np.savez(p / "nx.npz", y=np.ones((4, 2)), t=np.arange(4.0)),
            ["must hold an array 'x'", "['y', 't']"],
        ),
        (
            lambda p: np.savez(p / "len.npz", x=np.ones((4, 2)), t=np.arange(3.0)),
            ["t must have shape (N,) = (4,)", "(3,)"],
        ),
        (lambda p: np.savez(p / "nan.npz", x=np.full((4, 2), np.nan), t=np.arange(4.0)), ["x must be finite"]),
        (lambda p: (p / "bad.csv").write_text("t,x\n0,1\n1,abc\n"), ["malformed snapshot csv", "line 3"]),
        (lambda p: (p / "data.txt").write_text("t,x\n0,1\n"), ["extension must be .npz, .csv or .h5ad", "'.txt'"]),
    ],
)
def test_bad_files_raise_one_line_naming_the_rule(tmp_path, make, parts):
    make(tmp_path)
    (path,) = list(tmp_path.iterdir())
    with pytest.raises(ValueError) as e:
        load_snapshots(path)
    msg = str(e.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)


def test_unknown_course_name_lists_the_builtins():
    with pytest.raises(ValueError, match="bifurcation"):
        load_snapshots("no-such-course")


@pytest.mark.parametrize("index", [0, 2])
def test_holdout_must_be_intermediate(index):
    s = Snapshots.from_labelled(*_labelled())
    with pytest.raises(ValueError, match=f"holdout must be an intermediate time point, 1 <= holdout <= 1.*got {index}"):
        s.check_index(index, intermediate=True, what="holdout")


def test_bifurcation_course_is_deterministic_in_its_seed():
    a, b, c = (bifurcation_course(50, seed=s) for s in (0, 0, 1))
    assert a.times.tolist() == [0, 1, 2, 3, 4] and a.sizes == (50,) * 5
    for pa, pb, pc in zip(a.populations, b.populations, c.populations):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_bifurcation_drift_turns_at_omega_and_splits_the_radius():
    x = torch.tensor([[2.0, 0.0], [0.0, 2.5], [-1.5, 0.0]])
    f = bifurcation_drift(x)
    # tangential component omega * r, radial rate z (1 - z^2) with z = r - 2
    r = x.norm(dim=1)
    tangent = torch.stack([-x[:, 1], x[:, 0]], 1) / r[:, None]
    radial = x / r[:, None]
    np.testing.assert_allclose((f * tangent).sum(1), math.pi / 4 * r, rtol=1e-6)
    z = r - 2
    np.testing.assert_allclose((f * radial).sum(1), 1.5 * z * (1 - z**2), atol=1e-6)


def test_the_course_splits_into_two_branches_and_the_straight_line_is_visibly_wrong():
    s = bifurcation_course(400)
    r_end = s.populations[-1].norm(dim=1)
    assert ((r_end - 1).abs() < 0.35).float().mean() > 0.3 and ((r_end - 3).abs() < 0.35).float().mean() > 0.3
    floor = w1(s.populations[2], bifurcation_course(400, seed=1).populations[2])
    base = baseline_holdout_w1(s, 2, generator=torch.Generator().manual_seed(0)).w1
    assert base > 3 * floor, (base, floor)
