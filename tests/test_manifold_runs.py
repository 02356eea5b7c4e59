"""Manifold runs (``flowmatch train --manifold sphere|torus``): the config rules, the CLI's bad
input (exit code 2, nothing written), and end-to-end training whose held-out NLL approaches the
exact density's."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from flowmatch.cli import main
from flowmatch.manifolds import FlatTorus, Sphere
from flowmatch.runs.config import RunConfig
from flowmatch.runs.manifold import ManifoldKind, build_manifold_data
from flowmatch.runs.plan import kind_for


def _error(capsys, argv):
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("flowmatch: error: "), (rc, err)
    return err[0]


def test_the_config_of_a_manifold_run_and_its_kind():
    cfg = RunConfig(manifold="sphere", target="vmf-mixture")
    assert cfg.source == "uniform" and isinstance(kind_for(cfg), ManifoldKind)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # config.toml repeats it
    assert kind_for(RunConfig()).name == "vector"


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(manifold="sphere", target="moons"), "target on the sphere must be one of vmf-mixture, got 'moons'"),
        (dict(manifold="torus", target="vmf-mixture"), "target on the torus must be one of wrapped-gaussians"),
        (dict(manifold="sphere", target="vmf-mixture", source="moons"), "source on a manifold must be 'uniform'"),
        (dict(manifold="sphere", target="vmf-mixture", method="sb-cfm"), "method on a manifold must be one of"),
        (
            dict(manifold="torus", target="wrapped-gaussians", sigma=0.1),
            "sigma on a manifold must be 0 (geodesic paths have no noise), got 0.1",
        ),
        (dict(manifold="torus", target="wrapped-gaussians", eval_solver="dopri5"), "eval_solver on a manifold"),
        (dict(manifold="torus", target="wrapped-gaussians", cond="label"), "cond on a manifold must be 'none'"),
        (dict(manifold="hyperbolic"), "unknown manifold 'hyperbolic'"),
        (dict(source="uniform"), "source 'uniform' is the uniform law of a manifold"),
    ],
)
def test_bad_manifold_settings_are_one_line_value_errors(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**changes)


def test_the_data_is_on_the_manifold_and_deterministic():
    cfg = RunConfig(manifold="torus", target="wrapped-gaussians", n_train=500, n_test=100)
    a, b = build_manifold_data(cfg), build_manifold_data(cfg)
    assert torch.equal(a.train, b.train) and torch.equal(a.source_test, b.source_test)
    assert not torch.equal(a.test, a.floor)  # independent draws
    assert float(FlatTorus(2).distance_to_manifold(torch.cat([a.train, a.test, a.source_test])).max()) == 0
    s = build_manifold_data(RunConfig(manifold="sphere", target="vmf-mixture", n_train=500, n_test=100))
    assert float(Sphere(2).distance_to_manifold(torch.cat([s.train, s.source_test])).max()) < 1e-6


def test_the_cli_refuses_bad_manifold_input_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    line = _error(capsys, ["train", "--manifold", "torus", "--target", "vmf-mixture", "--out", str(out), "--quiet"])
    assert "target on the torus must be one of wrapped-gaussians" in line
    line = _error(capsys, ["train", "--manifold", "cube", "--target", "vmf-mixture", "--out", str(out)])
    assert "unknown manifold 'cube'" in line
    line = _error(
        capsys, ["train", "--manifold", "sphere", "--target", "vmf-mixture", "--n-test", "1", "--out", str(out)]
    )
    assert "the evaluation needs at least" in line
    assert not out.exists()


@pytest.mark.slow
def test_ot_cfm_on_the_sphere_trains_towards_the_exact_density(capsys, tmp_path):
    out = tmp_path / "sphere"
    argv = ["train", "--manifold", "sphere", "--target", "vmf-mixture", "--method", "ot-cfm", "--steps", "600"]
    argv += ["--batch-size", "256", "--n-train", "4000", "--n-test", "400", "--out", str(out), "--quiet"]
    argv += ["--coupling-workers", "0"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ev = metrics["eval"]
    assert metrics["manifold"] == "sphere" and metrics["method"] == "ot-cfm"
    # uniform has NLL log(4 pi) = 2.53; the trained flow must be far below it and near the exact density
    assert ev["nll_exact"] < ev["nll"] < ev["nll_exact"] + 0.6 < math.log(4 * math.pi)
    assert ev["mmd"] < 0.02
    assert (out / "samples.png").stat().st_size > 0
    # eval of the saved run repeats the numbers of the training's evaluation
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["nll"] == pytest.approx(ev["nll"], rel=1e-5) and again["mmd"] == pytest.approx(ev["mmd"], rel=1e-5)
    # sample: points on S^2; a bad solver is refused before anything is written
    pts = tmp_path / "pts.npy"
    assert main(["sample", str(out), "--out", str(pts), "--n", "300", "--solver", "rk4", "--steps", "10"]) == 0
    x = np.load(pts)
    assert x.shape == (300, 3) and np.abs(np.linalg.norm(x, axis=1) - 1).max() < 1e-6
    bad = tmp_path / "bad.npy"
    assert "must be one of euler, midpoint, rk4" in _error(
        capsys, ["sample", str(out), "--out", str(bad), "--solver", "dopri5"]
    )
    assert not bad.exists()


@pytest.mark.slow
def test_i_cfm_on_the_torus_trains_and_resumes_exactly(tmp_path):
    base = ["train", "--manifold", "torus", "--target", "wrapped-gaussians", "--method", "i-cfm", "--batch-size", "128"]
    base += ["--n-train", "2000", "--n-test", "200", "--quiet", "--no-plots", "--checkpoint-every", "100"]
    assert main(base + ["--steps", "200", "--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--steps", "100", "--out", str(tmp_path / "b")]) == 0
    assert main(base + ["--steps", "200", "--out", str(tmp_path / "b"), "--resume"]) == 0
    from flowmatch.training.checkpoint import load_checkpoint

    wa, wb = (
        load_checkpoint(tmp_path / "a" / "checkpoints").model,
        load_checkpoint(tmp_path / "b" / "checkpoints").model,
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ev = json.loads((tmp_path / "a" / "metrics.json").read_text())["eval"]
    assert ev["nll"] < 2 * math.log(2 * math.pi)  # better than the uniform source
