"""Distillation as a run (`flowmatch train --distill TEACHER --distill-steps K`): the student starts
from the teacher's settings, trains on the teacher's dopri5 pairs, is evaluated by K Euler steps,
lands near the teacher's ODE endpoints where the teacher's own K Euler steps do not, resumes
exactly, and refuses teachers and data it cannot distil in one line (exit code 2)."""

from __future__ import annotations

import json

import pytest
import torch

from flowmatch.cli import main
from flowmatch.runs import RunConfig
from flowmatch.runs.distill import check_distill
from flowmatch.runs.run import load_run
from flowmatch.sampling.ode import sample
from flowmatch.training.checkpoint import load_checkpoint

SMALL = ["--n-train", "1000", "--n-test", "200", "--hidden", "32", "--batch-size", "256", "--eval-steps", "20"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "teacher"
    argv = ["train", "--method", "i-cfm", "--target", "moons", *SMALL, "--steps", "1500", "--quiet"]
    assert main([*argv, "--checkpoint-every", "1500", "--out", str(out)]) == 0
    return out


def test_the_student_lands_on_the_teachers_endpoints_in_one_step(teacher, tmp_path):
    out = tmp_path / "student"
    argv = ["train", "--distill", str(teacher), "--distill-steps", "1", "--steps", "1500", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    student, t = load_run(out, device="cpu"), load_run(teacher, device="cpu")
    cfg = student.config
    # the teacher's settings, a velocity network evaluated by one Euler step
    assert (cfg.target, cfg.n_train, cfg.hidden, cfg.method) == ("moons", 1000, 32, "i-cfm")
    assert (cfg.eval_solver, cfg.eval_steps, cfg.distill_steps) == ("euler", 1, 1)
    assert json.loads((out / "metrics.json").read_text())["distill_steps"] == 1
    x0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ode = sample(t.model, x0, solver="dopri5", atol=1e-5, rtol=1e-5).x
        euler_teacher = sample(t.model, x0, solver="euler", steps=1).x
        euler_student = sample(student.model, x0, solver="euler", steps=1).x
    err_student = float(((euler_student - ode) ** 2).sum(1).mean())
    err_teacher = float(((euler_teacher - ode) ** 2).sum(1).mean())
    # independent pairs: the teacher's one step lands at the mean; the student's near ODE(x0)
    assert err_student < 0.25 * err_teacher, (err_student, err_teacher)


def test_a_resumed_student_trains_on_the_same_pairs(teacher, tmp_path):
    base = ["train", "--distill", str(teacher), "--distill-steps", "2", "--checkpoint-every", "10", "--quiet"]
    assert main([*base, "--steps", "20", "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--steps", "10", "--out", str(tmp_path / "b")]) == 0
    assert main(["train", "--resume", "--steps", "20", "--quiet", "--out", str(tmp_path / "b")]) == 0
    a = load_checkpoint(tmp_path / "a" / "checkpoints")
    b = load_checkpoint(tmp_path / "b" / "checkpoints")
    assert a.step == b.step == 20
    for k, v in a.model.items():
        assert torch.equal(v, b.model[k]), k


def test_refusals_name_the_rule(teacher, tmp_path, capsys):
    cases = [
        (["--target", "8gaussians"], "target must be 'moons' (the teacher's)"),
        (["--seed", "3"], "seed must be 0 (the teacher's)"),
    ]
    for flags, message in cases:
        code = main(["train", "--distill", str(teacher), *flags, "--steps", "5", "--out", str(tmp_path / "r")])
        assert code == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "r").exists()  # nothing written
    code = main(["train", "--distill", str(tmp_path / "nowhere"), "--steps", "5", "--out", str(tmp_path / "r")])
    assert code == 2 and "distill must name a trained run directory" in capsys.readouterr().err


def test_what_a_student_cannot_be_is_refused_in_one_line(tmp_path):
    cases = [
        (dict(method="meanflow"), dict(), "velocity field"),
        (dict(snapshots="bifurcation"), dict(), "supports vector and image runs"),
        (dict(target="digits", cond="label"), dict(target="digits"), "cond must be 'label'"),
        (
            dict(target="digits", cond="label"),
            dict(target="digits", cond="label", guidance_dropout=0.1),
            "guidance_dropout must be 0",
        ),
        (dict(target="digits"), dict(target="digits", model="mlp"), "an image student is a UNet"),
    ]
    for i, (teacher, student, message) in enumerate(cases):
        t = tmp_path / f"t{i}"
        t.mkdir()
        (t / "config.toml").write_text("".join(f'{k} = "{v}"\n' for k, v in teacher.items()))
        with pytest.raises(ValueError, match=message) as e:
            check_distill(RunConfig(distill=str(t), **student))
        assert "\n" not in str(e.value)


def test_pairs_of_a_conditional_field_keep_their_labels_through_the_batches():
    from flowmatch.training.reflow import PairedBatches, reflow_pairs

    def field(x, t, cond=None):  # each label's own constant velocity: x1 = x0 + cond
        return torch.zeros_like(x) + cond.to(x.dtype)[:, None]

    x0 = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(40) % 4
    pairs = reflow_pairs(_Wrap(field), x0, solver="rk4", steps=3, cond=labels, chunk_size=16)
    torch.testing.assert_close(pairs.x1, x0 + labels[:, None].float())
    batches = PairedBatches(pairs.x0, pairs.x1, cond=pairs.cond)
    g = torch.Generator().manual_seed(1)
    a = batches.source(10, generator=g)
    b, c = batches.target(10, generator=g)
    torch.testing.assert_close(b - a, c[:, None].float().expand(10, 2))  # each pair with its own label
    with pytest.raises(ValueError, match="one row per source row"):
        reflow_pairs(_Wrap(field), x0, cond=labels[:5])


class _Wrap(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x, t, cond=None):
        return self.f(x, t, cond)


@pytest.mark.slow
def test_a_class_conditional_image_teacher_is_distilled_into_a_conditional_unet(tmp_path):
    teacher = tmp_path / "teacher"
    flags = ["--unet-width", "8", "--unet-attention", "none", "--batch-size", "32", "--quiet"]
    argv = ["train", "--target", "digits", "--cond", "label", "--guidance-dropout", "0.1", "--method", "ot-cfm"]
    assert main([*argv, "--steps", "6", "--eval-steps", "2", *flags, "--out", str(teacher)]) == 0
    student = tmp_path / "student"
    assert main(["train", "--distill", str(teacher), "--steps", "4", "--quiet", "--out", str(student)]) == 0
    run = load_run(student, device="cpu")
    cfg = run.config
    assert (cfg.cond, cfg.guidance_dropout, cfg.eval_guidance, cfg.eval_steps) == ("label", 0.0, 1.0, 1)
    assert run.model.num_classes == 10 and run.model.interval_mlp is None  # a conditional velocity UNet
    state = load_checkpoint(student / "checkpoints").state
    assert state["teacher_guidance"] == 1.0 and state["teacher_tol"] == 1e-3
    rows = json.loads((student / "metrics.json").read_text())["eval"]["rows"]
    assert [r["nfe"] for r in rows] == [1] and 0.0 <= rows[0]["accuracy"] <= 1.0
