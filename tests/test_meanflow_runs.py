"""MeanFlow as a method of runs and the CLI: --method meanflow / ot-meanflow train an
AverageVelocityMLP (a UNet with the interval input for images), evaluate and sample by its jumps
(`sample --steps 1`), and refuse what they cannot do in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowmatch.cli import main
from flowmatch.models.average import AverageVelocityMLP
from flowmatch.objectives import methods
from flowmatch.objectives.meanflow import MeanFlowMatcher
from flowmatch.runs import RunConfig
from flowmatch.runs.run import load_run, train_run
from flowmatch.sampling.average import sample_average

TINY = dict(n_train=600, n_test=200, steps=60, batch_size=128, hidden=32, log_every=20, checkpoint_every=60)


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mf"
    cfg = RunConfig(method="ot-meanflow", target="moons", eval_steps=1, **TINY)
    _, _, report = train_run(cfg, out, quiet=True, plots=True)
    return out, cfg, report


def test_the_methods_build_meanflow_matchers_with_their_couplings():
    for name, coupling in (("meanflow", "Independent"), ("ot-meanflow", "ExactOT")):
        fm = methods.get(name)
        assert isinstance(fm, MeanFlowMatcher) and type(fm.coupling).__name__ == coupling
        assert methods.spec(name).average_velocity
    assert RunConfig(method="meanflow").eval_solver == "average"
    assert RunConfig(method="ot-cfm").eval_solver == "euler"


def test_a_meanflow_run_evaluates_and_samples_by_its_jumps(mf_run, tmp_path):
    out, cfg, report = mf_run
    assert report.solver == "average" and report.steps == 1 and report.nfe == 1
    assert (out / "samples.png").is_file()
    run = load_run(out, device="cpu")
    assert isinstance(run.model, AverageVelocityMLP) and run.config.eval_solver == "average"
    f = tmp_path / "one.npy"
    assert main(["sample", str(out), "--n", "50", "--steps", "1", "--out", str(f), "--quiet"]) == 0
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    expected = sample_average(run.model, x0, steps=1).x.numpy()
    np.testing.assert_allclose(np.load(f), expected, rtol=1e-5, atol=1e-6)
    # another solver integrates the instantaneous velocity u(x, t, 0) instead
    g = tmp_path / "ode.npy"
    assert main(["sample", str(out), "--n", "50", "--solver", "rk4", "--steps", "4", "--out", str(g), "--quiet"]) == 0
    assert not np.allclose(np.load(g), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(method="meanflow", snapshots="bifurcation"), "trains on vector data"),
        (dict(method="meanflow", model="unet"), "builds an AverageVelocityMLP"),
        (dict(method="shortcut", target="digits", model="mlp"), "builds a UNet with the interval input"),
        (dict(method="meanflow", target_param="x1"), "target_param must be velocity"),
        (dict(method="ot-cfm", eval_solver="average"), "eval_solver 'average' needs a meanflow method"),
    ],
)
def test_what_meanflow_runs_cannot_do_is_a_one_line_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as e:
        RunConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_bench_fewstep_scores_every_method_at_every_nfe(tmp_path, capsys):
    from flowmatch.bench.fewstep import NFES, FewStepSettings, run_fewstep

    settings = FewStepSettings.quick(methods=("i-cfm", "meanflow"))
    res = run_fewstep(tmp_path, settings, log=None)
    assert [(r["method"], r["nfe"]) for r in res.rows] == [(m, k) for m in ("i-cfm", "meanflow") for k in NFES]
    assert all(np.isfinite(r["w2"]) and r["w2"] > 0 for r in res.rows)
    assert "| n-moons | meanflow |" in (tmp_path / "table.md").read_text()
    with pytest.raises(ValueError, match="methods must be among"):
        run_fewstep(tmp_path, FewStepSettings.quick(methods=("fm",)), log=None)
    assert main(["bench", "fewstep", "--quick", "--tasks", "spirals", "--out", str(tmp_path), "--quiet"]) == 2
    assert "tasks must be among" in capsys.readouterr().err
