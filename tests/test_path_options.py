"""Runs on general Gaussian paths: --scheduler, --target-param, --loss-weighting, --time-sampler in
RunConfig and the objective it builds, x1/eps/score runs loaded as velocity fields, the regular
time range of the conversions, and `flowmatch sample --churn`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowmatch.cli import main
from flowmatch.models import MLP, AsVelocity
from flowmatch.models.parametrization import regular_times
from flowmatch.objectives import LogitNormalTime, ShiftedTime, UniformTime
from flowmatch.paths import AffinePath, CondOTScheduler, LinearVPScheduler, VPScheduler, parse_scheduler
from flowmatch.runs import RunConfig
from flowmatch.runs.build import build_matcher
from flowmatch.runs.run import load_run, train_run

TINY = dict(n_train=600, n_test=200, steps=150, batch_size=128, hidden=32, log_every=50, checkpoint_every=150)


def test_build_matcher_applies_scheduler_target_and_time_sampler():
    cfg = RunConfig(
        method="ot-cfm",
        sigma=0.0,
        scheduler="vp:0.1,20",
        target_param="x1",
        loss_weighting="velocity",
        time_sampler="logit-normal:0.5,1",
    )
    fm = build_matcher(cfg)
    assert isinstance(fm.path, AffinePath) and fm.path.is_gaussian
    assert repr(fm.path.scheduler) == repr(VPScheduler(0.1, 20.0))
    assert repr(fm.time_sampler) == repr(LogitNormalTime(0.5, 1.0))
    assert (fm.target_param, fm.loss_weighting) == ("x1", "velocity")
    assert type(fm.coupling).__name__ == "ExactOT"  # the method keeps its coupling
    # the defaults leave the method's objective as it was
    plain = build_matcher(RunConfig(method="ot-cfm"))
    assert type(plain.path).__name__ == "LinearPath" and plain.path.sigma == 0.1
    assert isinstance(plain.time_sampler, UniformTime) and plain.target_param == "velocity"
    # --sigma adds noise on top of a scheduler; sb-cfm takes a time sampler
    assert build_matcher(RunConfig(method="i-cfm", sigma=0.2, scheduler="cosine")).path.sigma == 0.2
    assert isinstance(build_matcher(RunConfig(method="sb-cfm", time_sampler="shift:3")).time_sampler, ShiftedTime)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(method="ot-cfm", target_param="eps"), "needs an affine Gaussian path"),
        (dict(method="fm", target_param="x1", source="moons", target="8gaussians"), "needs --source gaussian"),
        (dict(method="sb-cfm", scheduler="vp"), "scheduler needs a method whose path it can replace"),
        (dict(method="cnf", time_sampler="mode"), "has no flow matching path"),
        (dict(scheduler="vp:a,b"), "must be written"),
        (dict(time_sampler="logit"), "unknown time sampler"),
        (dict(target_param="noise"), "unknown target_param"),
        (dict(loss_weighting="snr"), "unknown loss_weighting"),
        (dict(target="speech", scheduler="cosine", method="i-cfm"), "apply to vector and image runs"),
    ],
)
def test_bad_path_options_are_one_line_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as e:
        RunConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_regular_times_keep_away_from_singular_ends():
    """eps/score divide by alpha (0 at t = 0 on CondOT, linear VP); VP's sigma' is -inf at t = 1."""
    assert regular_times(CondOTScheduler(), "x1") == (0.0, 1.0)
    assert regular_times(CondOTScheduler(), "eps") == (1e-3, 1.0)
    assert regular_times(VPScheduler(), "eps") == (0.0, 1 - 1e-3)  # alpha_0 = exp(-5.025) > 0
    assert regular_times(LinearVPScheduler(), "score") == (1e-3, 1 - 1e-3)
    torch.manual_seed(0)
    net = MLP(2, hidden=16)
    field = AsVelocity(net, CondOTScheduler(), "eps", t_range=(1e-3, 1.0))
    x = torch.randn(4, 2)
    at0 = field(x, torch.zeros(4))
    assert torch.isfinite(at0).all()
    torch.testing.assert_close(at0, field(x, torch.full((4,), 1e-3)))
    assert not torch.isfinite(AsVelocity(net, CondOTScheduler(), "eps")(x, torch.zeros(4))).all()
    with pytest.raises(ValueError, match="t_range"):
        AsVelocity(net, CondOTScheduler(), "eps", t_range=(0.5, 0.5))


@pytest.fixture(scope="module")
def x1_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "x1"
    cfg = RunConfig(
        method="i-cfm", sigma=0.0, scheduler="cosine", target_param="x1", time_sampler="logit-normal", **TINY
    )
    trainer, _, report = train_run(cfg, out, quiet=True, plots=False)
    return out, trainer, report


def test_an_x1_run_trains_round_trips_and_loads_as_its_velocity(x1_run):
    out, trainer, report = x1_run
    assert report is not None and np.isfinite(report.w2)
    run = load_run(out, device="cpu")
    assert run.config.scheduler == "cosine" and run.config.target_param == "x1"
    assert run.config.time_sampler == "logit-normal"
    assert isinstance(run.model, AsVelocity) and run.model.param == "x1"
    # the loaded field is the conversion of the trained network's x1 prediction
    x, t = torch.randn(8, 2), torch.full((8,), 0.4)
    sched = parse_scheduler("cosine")
    o = sched(t)
    a, s, da, ds = (v[:, None] for v in (o.alpha, o.sigma, o.d_alpha, o.d_sigma))
    with torch.no_grad():
        x1_hat = trainer.sampling_model(x, t)
        expected = da * x1_hat + ds * (x - a * x1_hat) / s
        torch.testing.assert_close(run.model(x, t), expected, rtol=1e-5, atol=1e-5)


def test_sample_churn_writes_seeded_samples_and_rejects_non_gaussian_runs(x1_run, tmp_path, capsys):
    out, _, _ = x1_run
    a, b, c = (tmp_path / f"{k}.npy" for k in "abc")
    for f, churn in ((a, "1"), (b, "1"), (c, "0")):
        assert (
            main(["sample", str(out), "--out", str(f), "--n", "64", "--steps", "20", "--churn", churn, "--quiet"]) == 0
        )
    xa, xb, xc = (np.load(f) for f in (a, b, c))
    assert xa.shape == (64, 2) and np.isfinite(xa).all()
    np.testing.assert_array_equal(xa, xb)  # --seed fixes the source and the noise
    assert not np.allclose(xa, xc)  # churn 0 is the deterministic DDIM solve
    assert main(["sample", str(out), "--out", str(a), "--churn", "-1", "--quiet"]) == 2
    assert "--churn must be" in capsys.readouterr().err
    assert main(["sample", str(out), "--out", str(a), "--churn", "1", "--sde", "--quiet"]) == 2
    assert "give one of them" in capsys.readouterr().err


def test_sample_churn_needs_a_gaussian_path(tmp_path, capsys):
    out = tmp_path / "ot"
    train_run(RunConfig(method="ot-cfm", **{**TINY, "steps": 20, "checkpoint_every": 20}), out, quiet=True, plots=False)
    assert main(["sample", str(out), "--out", str(tmp_path / "s.npy"), "--churn", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--churn needs a run on an affine Gaussian path" in err and "sigma 0.1" in err
