"""Consistency flow matching as a method of runs and the CLI: --method cfm-consistency trains an
ordinary velocity network (so vector, image and class-conditional runs all work), evaluates it by
one Euler step, samples it with `sample --steps 1`, and refuses other target parametrisations in
one line."""

from __future__ import annotations

import json

import numpy as np
import torch

from flowmatch.cli import main
from flowmatch.models import MLP
from flowmatch.objectives import methods
from flowmatch.objectives.consistency import ConsistencyMatcher
from flowmatch.runs import RunConfig
from flowmatch.runs.run import load_run, train_run
from flowmatch.sampling.ode import sample


def test_the_method_builds_a_consistency_matcher_on_the_straight_path():
    fm = methods.get("cfm-consistency")
    assert isinstance(fm, ConsistencyMatcher) and fm.coupling.is_identity and fm.segments == 1
    assert methods.spec("cfm-consistency").velocity_only and not methods.spec("cfm-consistency").average_velocity
    assert RunConfig(method="cfm-consistency").eval_solver == "euler"


def test_a_vector_run_evaluates_at_one_step_and_samples_it(tmp_path):
    cfg = RunConfig(
        method="cfm-consistency",
        target="moons",
        n_train=600,
        n_test=200,
        steps=60,
        batch_size=128,
        hidden=32,
        log_every=20,
        checkpoint_every=60,
        eval_steps=1,
    )
    out = tmp_path / "cc"
    _, _, report = train_run(cfg, out, quiet=True)
    assert report.solver == "euler" and report.steps == 1 and report.nfe == 1
    run = load_run(out, device="cpu")
    assert isinstance(run.model, MLP)
    f = tmp_path / "one.npy"
    assert main(["sample", str(out), "--n", "50", "--solver", "euler", "--steps", "1", "--out", str(f), "--quiet"]) == 0
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(
        np.load(f), sample(run.model, x0, solver="euler", steps=1).x.numpy(), rtol=1e-5, atol=1e-6
    )


def test_a_class_conditional_image_run_trains_and_reports_its_one_step_rows(tmp_path):
    cfg = RunConfig(
        method="cfm-consistency",
        target="digits",
        cond="label",
        guidance_dropout=0.1,
        unet_width=8,
        unet_attention="none",
        n_test=64,
        steps=8,
        batch_size=32,
        log_every=4,
        checkpoint_every=8,
        eval_steps=1,
    )
    out = tmp_path / "img"
    train_run(cfg, out, quiet=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 8 and "rows" in metrics["eval"]


def test_other_target_parametrisations_are_refused_in_one_line(capsys, tmp_path):
    argv = ["train", "--method", "cfm-consistency", "--target-param", "x1", "--steps", "1", "--quiet"]
    code = main([*argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "cfm-consistency" in err and "target_param must be velocity" in err
    assert not (tmp_path / "r").exists()  # refused before anything is written
