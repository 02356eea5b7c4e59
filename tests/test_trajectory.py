"""Multi-marginal flow matching across snapshot intervals, pushing populations, leave-one-out W1, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from flowmatch import FlowMatcher
from flowmatch.cli import main
from flowmatch.couplings import Independent
from flowmatch.data.snapshots import Snapshots, bifurcation_drift, save_snapshots, simulate
from flowmatch.models import MLP, FlowAndScore
from flowmatch.paths import LinearPath
from flowmatch.training.trainer import Trainer, TrainerConfig
from flowmatch.trajectory import SnapshotBatches, SnapshotMatcher, interval_blocks
from flowmatch.trajectory.inference import holdout_w1, mccann_interpolation, push


class Drift(nn.Module):
    """A velocity model equal to a known drift f(x, t)."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond=None):
        return self.f(x, t)


def _course(times, n=64, dim=2, seed=0, shift=(1.0, -0.5)):
    """Populations translated at constant velocity ``shift``: x(t) = x(0) + shift t (same cells)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, dim, generator=g)
    c = torch.tensor(shift)
    return Snapshots(torch.tensor(times, dtype=torch.float64), tuple(x0 + c * t for t in times))


def test_interval_blocks_cover_the_batch_evenly():
    assert interval_blocks(10, 3) == [(0, 4), (4, 7), (7, 10)]
    with pytest.raises(ValueError, match="batch size must be >= the number of intervals \\(3\\).*got 2"):
        interval_blocks(2, 3)


def test_time_rescaling_gives_the_secant_velocity_of_each_interval():
    times = [0.0, 0.5, 2.5, 3.0]
    snaps = _course(times, n=40)
    fm = SnapshotMatcher(FlowMatcher(LinearPath(0.0), Independent()), times)
    g = torch.Generator().manual_seed(0)
    x0 = SnapshotBatches(snaps, "source")(30, generator=g)
    x1 = SnapshotBatches(snaps, "target")(30, generator=g)
    s = fm.sample(x0, x1, generator=g)
    for k, (lo, hi) in enumerate(interval_blocks(30, 3)):
        dt = times[k + 1] - times[k]
        assert bool((s.interval[lo:hi] == k).all())
        assert bool(((s.t[lo:hi] >= times[k]) & (s.t[lo:hi] <= times[k + 1])).all())
        torch.testing.assert_close(s.u_t[lo:hi], (s.x1[lo:hi] - s.x0[lo:hi]) / dt)
        frac = ((s.t[lo:hi] - times[k]) / dt)[:, None]
        torch.testing.assert_close(s.x_t[lo:hi], s.x0[lo:hi] + frac * (s.x1[lo:hi] - s.x0[lo:hi]))
    # cells that move at constant velocity c over intervals of lengths 0.5, 2 and 0.5: u_t = c in each
    c = torch.tensor([1.0, -0.5])
    dts = torch.cat(
        [torch.full((hi - lo, 1), times[k + 1] - times[k]) for k, (lo, hi) in enumerate(interval_blocks(30, 3))]
    )
    s = fm.sample(x0, x0 + c * dts, generator=g)
    torch.testing.assert_close(s.u_t, c.expand_as(s.u_t), atol=1e-5, rtol=0)


def test_batches_draw_block_k_from_snapshot_k_and_k_plus_1():
    snaps = Snapshots(
        torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), tuple(torch.full((20, 2), float(k)) for k in range(3))
    )
    g = torch.Generator().manual_seed(0)
    src, tgt = SnapshotBatches(snaps, "source")(9, generator=g), SnapshotBatches(snaps, "target")(9, generator=g)
    for k, (lo, hi) in enumerate(interval_blocks(9, 2)):
        assert bool((src[lo:hi] == k).all()) and bool((tgt[lo:hi] == k + 1).all())
    with pytest.raises(ValueError, match="at most as many pairs as its smallest snapshot \\(20 points\\), got 42"):
        SnapshotBatches(snaps, "source").check_batch_size(42)


def test_ot_cfm_pairs_only_within_intervals_and_optimally_there():
    import ot

    g = torch.Generator().manual_seed(1)
    snaps = Snapshots(
        torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64),
        tuple(torch.randn(30, 2, generator=g) + 5 * k for k in range(3)),
    )
    fm = SnapshotMatcher.from_method("ot-cfm", snaps.times)
    x0 = SnapshotBatches(snaps, "source")(16, generator=g)
    x1 = SnapshotBatches(snaps, "target")(16, generator=g)
    s = fm.sample(x0, x1, generator=g)
    for lo, hi in interval_blocks(16, 2):
        # the pairs of a block are a permutation of that block's rows
        assert sorted(map(tuple, s.x1[lo:hi].tolist())) == sorted(map(tuple, x1[lo:hi].tolist()))
        cost = ((s.x0[lo:hi] - s.x1[lo:hi]) ** 2).sum(1).mean().item()
        m = ot.dist(x0[lo:hi].double().numpy(), x1[lo:hi].double().numpy())
        assert cost == pytest.approx(
            ot.emd2(np.full(hi - lo, 1 / (hi - lo)), np.full(hi - lo, 1 / (hi - lo)), m), rel=1e-5
        )


def test_sb_cfm_bridge_scales_with_the_interval_length():
    fm = SnapshotMatcher.from_method("sb-cfm", [0.0, 1.0, 3.0], sigma=0.5)
    assert fm.learns_score
    assert fm.matchers[0].path.sigma == pytest.approx(0.5)
    assert fm.matchers[1].path.sigma == pytest.approx(0.5 * math.sqrt(2))
    assert fm.matchers[1].coupling.reg == pytest.approx(2 * 0.25 * 2)  # epsilon = 2 sigma^2 dt


# 16 cells per interval at epsilon 0.5: Sinkhorn may stop early and pair by exact OT (with a warning);
# the loss decomposition checked here holds for any pairing.
@pytest.mark.filterwarnings("ignore::flowmatch.ot.transport.SinkhornWarning")
def test_sb_cfm_loss_adds_the_weighted_score_term():
    snaps = _course([0.0, 1.0, 2.0], n=32)
    fm = SnapshotMatcher.from_method("sb-cfm", snaps.times, sigma=0.5)
    model = FlowAndScore(MLP(2, hidden=8), MLP(2, hidden=8))
    g = torch.Generator().manual_seed(0)
    x0, x1 = SnapshotBatches(snaps, "source")(16, generator=g), SnapshotBatches(snaps, "target")(16, generator=g)
    state = g.get_state()
    parts = fm.losses(model, x0, x1, generator=g)
    g.set_state(state)
    s = fm.sample(x0, x1, generator=g)
    expected = torch.mean((s.sigma_s[:, None] * model.score(s.x_t, s.t) + s.eps) ** 2)
    torch.testing.assert_close(parts.score, expected)
    torch.testing.assert_close(parts.total, parts.flow + parts.score)


def test_pushing_with_the_true_drift_reproduces_the_next_snapshot_and_back():
    g = torch.Generator().manual_seed(0)
    theta = math.pi / 2 + 0.3 * torch.randn(200, generator=g, dtype=torch.float64)
    x0 = torch.stack([2.05 * torch.cos(theta), 2.05 * torch.sin(theta)], 1)
    states = simulate(x0, [0.0, 1.0, 2.0], bifurcation_drift, noise=0.0, steps_per_unit=50)
    model = Drift(bifurcation_drift)
    fwd = push(model, x0, 0.0, 2.0, knots=[0.0, 1.0, 2.0], steps=50, solver="euler", return_trajectory=True)
    torch.testing.assert_close(fwd.trajectory[50], states[1], atol=1e-10, rtol=0)  # the same Euler grid
    torch.testing.assert_close(fwd.x, states[2], atol=1e-10, rtol=0)
    assert fwd.times.tolist()[::50] == [0.0, 1.0, 2.0] and fwd.nfe == 100
    back = push(model, states[2], 2.0, 0.0, knots=[0.0, 1.0, 2.0], steps=50, solver="rk4")
    assert (back.x - x0).abs().max() < 0.03  # rk4 inverts the flow up to the O(h) Euler error of the course (0.012)


def test_holdout_w1_of_the_true_flow_is_zero_and_rejects_endpoints():
    snaps = _course([0.0, 1.0, 2.0, 4.0], n=50)
    model = Drift(lambda x, t: torch.tensor([1.0, -0.5], dtype=x.dtype).expand_as(x))
    r = holdout_w1(model, snaps, 2, steps=4)
    assert r.w1 < 1e-5 and r.time == 2.0 and r.index == 2
    for bad in (0, 3):
        with pytest.raises(ValueError, match=f"holdout must be an intermediate time point.*got {bad}"):
            holdout_w1(model, snaps, bad)


def test_mccann_interpolation_moves_each_point_along_its_ot_match():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 2, generator=g, dtype=torch.float64)
    d = torch.tensor([3.0, 1.0], dtype=torch.float64)
    b = (a + d)[torch.randperm(40, generator=g)]  # a translation is its own OT map
    torch.testing.assert_close(mccann_interpolation(a, b, 0.25), a + 0.25 * d)


def test_short_training_recovers_a_constant_drift_and_interpolates_the_held_out_time():
    """Snapshots of a population translating at velocity c, times 0, 1, 3, 4 with t = 1 held out:
    the intervals have lengths 3 and 1, so without the per-interval rescaling the targets would be
    3c and c; the trained field must be c everywhere, and push t = 0 to the held-out t = 1."""
    times = [0.0, 1.0, 3.0, 4.0]
    full = _course(times, n=256, shift=(1.0, -0.5))
    train = full.without(1)
    torch.manual_seed(0)
    model = MLP(2, hidden=32)
    fm = SnapshotMatcher.from_method("ot-cfm", train.times, sigma=0.0 + 1e-3)
    Trainer(
        model,
        fm,
        SnapshotBatches(train, "source"),
        SnapshotBatches(train, "target"),
        TrainerConfig(steps=300, batch_size=128, lr=3e-3, quiet=True),
    ).fit()
    with torch.no_grad():
        x = full.populations[1][:64]
        for t in (0.5, 2.0, 3.5):
            v = model(x + torch.tensor([1.0, -0.5]) * (t - 1), torch.full((64,), t))
            assert (v.mean(0) - torch.tensor([1.0, -0.5])).abs().max() < 0.15, (t, v.mean(0))
    r = holdout_w1(model, full, 1, steps=20)
    assert r.w1 < 0.2, r  # the held-out population lies 1.1 away from t = 0's


def _write_course(tmp_path):
    from flowmatch.data.snapshots import bifurcation_course

    path = tmp_path / "course.npz"
    save_snapshots(bifurcation_course(120, times=(0, 1, 2, 3)), path)
    return path


TINY = ["--steps", "20", "--batch-size", "48", "--hidden", "16", "--eval-steps", "5", "--threads", "1", "--quiet"]


def test_cli_trains_with_a_holdout_and_eval_prints_and_writes_the_held_out_w1(tmp_path, capsys):
    path = _write_course(tmp_path)
    out = tmp_path / "run"
    argv = ["train", "--snapshots", str(path), "--holdout", "2", "--method", "sb-cfm", "--out", str(out), *TINY]
    assert main(argv[:-1]) == 0  # not quiet: prints the held-out W1
    printed = capsys.readouterr().out
    assert "held-out time point 2 (t = 2): W1 = " in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval"]["holdout"] == 2 and metrics["eval"]["holdout_w1_sde"] is not None
    assert (out / "trajectories.png").is_file()
    assert main(["eval", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    ev = json.loads((out / "eval.json").read_text())
    assert f"W1 = {ev['holdout_w1']:.4f}" in printed
    assert ev["holdout_w1"] == pytest.approx(metrics["eval"]["holdout_w1"], rel=1e-6)


@pytest.mark.parametrize(
    "flags, parts",
    [
        (["--holdout", "3"], ["holdout must be an intermediate time point, 1 <= holdout <= 2", "got 3"]),
        (["--holdout", "0"], ["holdout must be the index of an intermediate time point (>= 1)", "got 0"]),
        (["--method", "fm"], ["snapshot runs need a method that flows between data sets", "'fm'"]),
        (["--snapshots", "{one}"], ["at least 2 distinct time points", "got 1"]),
        (["--snapshots", "{notime}"], ["time column named 't' or 'time'"]),
        (
            ["--snapshots", "{course}", "--batch-size", "2"],
            ["batch size must be >= the number of intervals (3)", "got 2"],
        ),
    ],
)
def test_cli_bad_snapshot_input_exits_2_with_one_line(tmp_path, capsys, flags, parts):
    files = {"course": _write_course(tmp_path), "one": tmp_path / "one.npz", "notime": tmp_path / "nt.csv"}
    np.savez(files["one"], x=np.ones((5, 2)), t=np.zeros(5))
    files["notime"].write_text("a,b\n1,2\n")
    argv = ["train", "--snapshots", str(files["course"]), "--out", str(tmp_path / "run"), *TINY]
    argv += [f.format(**files) for f in flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("flowmatch: error:")
    for part in parts:
        assert part in err, (part, err)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_holdout_without_snapshots_is_an_error(tmp_path, capsys):
    assert main(["train", "--holdout", "1", "--out", str(tmp_path / "r"), *TINY]) == 2
    assert "holdout needs snapshot data (--snapshots)" in capsys.readouterr().err


def test_bench_trajectories_quick(tmp_path, capsys):
    out = tmp_path / "bench"
    assert (
        main(["bench", "trajectories", "--quick", "--holdouts", "1", "--no-plots", "--out", str(out), "--quiet"]) == 0
    )
    table = (out / "table.md").read_text()
    for row in ("OT-CFM", "I-CFM", "SB-CFM, ODE", "SB-CFM, SDE", "straight line"):
        assert f"| {row}" in table
    assert "a different data set" in table and "0.882±0.058" in table
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("method,sampler,holdout") and len(rows) == 1 + 5
