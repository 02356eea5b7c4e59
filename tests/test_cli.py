"""Tests of the flowmatch command: help, one-line errors with exit code 2, run directories, exact
repeats and resumption, sample/eval/plot. Called in-process through ``flowmatch.cli.main`` (plus
two real subprocess calls of the installed entry point)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flowmatch.cli import main
from flowmatch.runs.run import load_run
from flowmatch.training.checkpoint import latest_checkpoint, load_checkpoint

FLOWMATCH = Path(sys.executable).parent / "flowmatch"

# A tiny run: 20 steps, checkpoints at 10 and 20, cheap evaluation.
TINY = [
    "--steps",
    "20",
    "--batch-size",
    "32",
    "--n-train",
    "200",
    "--n-test",
    "64",
    "--hidden",
    "16",
    "--log-every",
    "5",
    "--checkpoint-every",
    "10",
    "--eval-steps",
    "4",
    "--threads",
    "1",
    "--quiet",
]


def with_flags(base: list[str], **flags) -> list[str]:
    """``base`` with ``--flag value`` replaced or appended."""
    argv = list(base)
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = str(value)
        else:
            argv += [flag, str(value)]
    return argv


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(Path(run_dir) / "checkpoints").model


def assert_same_weights(run_a, run_b):
    a, b = weights(run_a), weights(run_b)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def log_without_time(run_dir):
    with open(Path(run_dir) / "log.csv", newline="") as f:
        return [r[:4] for r in csv.reader(f)]


def error_of(capsys, argv: list[str]) -> str:
    """Run main(argv); assert exit code 2 and a single 'flowmatch: error:' line; return it."""
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("flowmatch: error: "), err
    assert "Traceback" not in err
    return lines[0]


def assert_no_valid_run_dir(out: Path):
    assert not out.exists() or not (out / "config.toml").exists(), sorted(p.name for p in out.iterdir())


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), "--target", "8gaussians", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    f = {}
    f["3d"] = d / "three.npy"
    np.save(f["3d"], rng.normal(size=(100, 3)).astype(np.float32))
    x = rng.normal(size=(100, 2))
    x[3, 1] = np.nan
    f["nan"] = d / "with_nan.npy"
    np.save(f["nan"], x)
    f["inf"] = d / "with_inf.csv"
    f["inf"].write_text("x,y\n1.0,2.0\n3.0,inf\n" + "".join(f"{i},{i}\n" for i in range(50)))
    f["empty"] = d / "empty.npy"
    f["empty"].write_bytes(b"")
    f["badcsv"] = d / "bad.csv"
    f["badcsv"].write_text("x,y\n1,2\n3,abc\n" + "".join(f"{i},{i}\n" for i in range(50)))
    f["small"] = d / "small.npy"
    np.save(f["small"], rng.normal(size=(60, 2)))
    return f


# --------------------------------------------------------------------------------------------
# Help
# --------------------------------------------------------------------------------------------

HELP_FLAGS = {
    "train": [
        "--out",
        "--config",
        "--resume",
        "--force",
        "--method",
        "--source",
        "--target",
        "--sigma",
        "--steps",
        "--batch-size",
        "--lr",
        "--ema-decay",
        "--seed",
        "--device",
        "--no-plots",
        "--threads",
    ],
    "sample": ["--n", "--solver", "--steps", "--out", "--seed", "--trajectory", "--no-ema"],
    "eval": ["--json", "--solver", "--steps", "--n"],
    "plot": ["--solver", "--steps"],
    "demo": ["--out", "--steps", "--methods", "--seed"],
}


@pytest.mark.parametrize("command", sorted(HELP_FLAGS))
def test_help_of_every_subcommand_exits_0_and_lists_its_flags(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: flowmatch {command}")
    for flag in HELP_FLAGS[command]:
        assert flag in out, flag


def test_train_help_states_the_paper_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ["(default: 20000)", "(default: 512)", "(default: 0.001)", "(default: selu)", "(default: ot-cfm)"]:
        assert text in out, text


# --------------------------------------------------------------------------------------------
# Bad input: exit 2, one line, no partial run directory
# --------------------------------------------------------------------------------------------

TRAIN_ERRORS = [
    ("unknown dataset", dict(target="nosuchset"), ["unknown dataset 'nosuchset'"]),
    ("unknown source", dict(source="nosuchsource"), ["unknown dataset 'nosuchsource'"]),
    ("unknown method", dict(method="xyz"), ["unknown method 'xyz'", "ot-cfm"]),
    ("dimension mismatch", dict(source="moons", target="{3d}"), ["same dimension", "2 (moons)", "3 (", "three.npy"]),
    ("nan in file", dict(target="{nan}"), ["must be finite", "with_nan.npy", "NaN"]),
    ("inf in file", dict(target="{inf}"), ["must be finite", "with_inf.csv"]),
    ("empty file", dict(target="{empty}"), ["must not be empty", "empty.npy"]),
    ("malformed csv", dict(target="{badcsv}"), ["malformed csv file", "bad.csv", "'abc'"]),
    ("missing file", dict(target="{dir}/missing.npy"), ["data file must exist", "missing.npy"]),
    ("sigma < 0", dict(sigma="-0.5"), ["sigma must be a finite number >= 0", "-0.5"]),
    ("steps 0", dict(steps="0"), ["steps must be a positive integer", "got 0"]),
    ("steps < 0", dict(steps="-3"), ["steps must be a positive integer", "got -3"]),
    (
        "batch larger than file",
        dict(target="{small}", n_test="10", batch_size="128"),
        ["batch size must not exceed", "50 rows", "got 128"],
    ),
    ("n_test >= file rows", dict(target="{small}", n_test="60"), ["n_test must be <", "60 rows", "n_test=60"]),
    ("rf with sigma", dict(method="rf", sigma="0.3"), ["needs sigma = 0", "0.3"]),
    ("fm with non-gaussian source", dict(method="fm", source="moons"), ["needs --source gaussian", "'moons'"]),
    ("ema decay 1", dict(ema_decay="1.0"), ["ema_decay must be < 1", "1.0"]),
    ("unknown eval solver", dict(eval_solver="rk45"), ["unknown eval_solver 'rk45'"]),
    ("threads 0", dict(threads="0"), ["--threads must be a positive integer", "got 0"]),
]


@pytest.mark.parametrize("flags, parts", [c[1:] for c in TRAIN_ERRORS], ids=[c[0] for c in TRAIN_ERRORS])
def test_bad_train_input_exits_2_with_one_line_and_leaves_no_run_dir(capsys, tmp_path, files, flags, parts):
    subst = {k: str(v) for k, v in files.items()} | {"dir": str(tmp_path)}
    flags = {k: v.format(**subst) for k, v in flags.items()}
    out = tmp_path / "out"
    msg = error_of(capsys, with_flags(["train", "--out", str(out), *TINY], **flags))
    for part in parts:
        assert part in msg, (part, msg)
    assert_no_valid_run_dir(out)


def test_unknown_key_in_a_config_file_exits_2(capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("steps = 10\nlearning_rate = 0.1\n")
    msg = error_of(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "out"), "--quiet"])
    assert "unknown config key(s) learning_rate" in msg
    assert_no_valid_run_dir(tmp_path / "out")


def test_existing_run_dir_is_neither_overwritten_nor_destroyed_by_a_bad_forced_train(capsys, tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    before = (run / "config.toml").read_text()
    msg = error_of(capsys, ["train", "--out", str(run), *TINY])
    assert "exists and is not empty" in msg and "--resume" in msg and "--force" in msg
    # --force with a bad setting: checked before the old run is removed
    msg = error_of(capsys, ["train", "--out", str(run), "--force", "--target", "nosuchset", *TINY])
    assert "nosuchset" in msg
    assert (run / "config.toml").read_text() == before
    assert latest_checkpoint(run / "checkpoints") is not None


def test_malformed_device_exits_2(capsys, tmp_path):
    msg = error_of(capsys, ["train", "--out", str(tmp_path / "out"), *TINY, "--device", "cuda:abc"])
    assert "cuda:abc" in msg


def test_resume_without_a_run_directory_exits_2(capsys, tmp_path):
    msg = error_of(capsys, ["train", "--resume", "--quiet"])
    assert "train needs --out" in msg
    missing = tmp_path / "missing"
    msg = error_of(capsys, ["train", "--resume", "--out", str(missing), "--quiet"])
    assert "cannot resume" in msg and str(missing) in msg and "config.toml" in msg
    assert not missing.exists()


def test_resume_with_a_changed_setting_exits_2_and_keeps_the_config(capsys, tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    before = (run / "config.toml").read_text()
    msg = error_of(capsys, ["train", "--resume", "--out", str(run), "--method", "i-cfm", "--quiet"])
    assert "cannot resume with a different method" in msg and "'ot-cfm'" in msg and "'i-cfm'" in msg
    assert (run / "config.toml").read_text() == before


def test_resume_with_fewer_steps_than_the_checkpoint_exits_2_and_keeps_the_config(capsys, tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    before = (run / "config.toml").read_text()
    msg = error_of(capsys, ["train", "--resume", "--out", str(run), "--steps", "5", "--quiet"])
    assert "steps must be >= the checkpoint's step 20, got 5" in msg
    assert (run / "config.toml").read_text() == before


def test_out_naming_an_existing_file_exits_2(capsys, tmp_path):
    f = tmp_path / "afile.txt"
    f.write_text("keep me")
    msg = error_of(capsys, ["train", "--out", str(f), *TINY])
    assert "afile.txt" in msg
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("command", ["sample", "eval", "plot"])
def test_missing_or_invalid_run_dir_exits_2(capsys, tmp_path, command):
    extra = ["--out", str(tmp_path / "s.npy")] if command == "sample" else []
    missing = tmp_path / "no_such_run"
    msg = error_of(capsys, [command, str(missing), *extra, "--quiet"])
    assert "run directory must exist" in msg and str(missing) in msg
    not_a_run = tmp_path / "not_a_run"
    not_a_run.mkdir()
    msg = error_of(capsys, [command, str(not_a_run), *extra, "--quiet"])
    assert "has no config.toml" in msg and str(not_a_run) in msg


def test_bad_sample_arguments_exit_2_and_write_nothing(capsys, tmp_path, good_run):
    out = tmp_path / "s.npy"
    msg = error_of(capsys, ["sample", str(good_run), "--solver", "rk45", "--out", str(out), "--quiet"])
    assert "unknown solver 'rk45'" in msg and "euler" in msg
    msg = error_of(capsys, ["sample", str(good_run), "--steps", "0", "--out", str(out), "--quiet"])
    assert "steps must be a positive integer, got 0" in msg
    msg = error_of(capsys, ["sample", str(good_run), "--n", "0", "--out", str(out), "--quiet"])
    assert "--n must be a positive integer, got 0" in msg
    msg = error_of(capsys, ["sample", str(good_run), "--out", str(tmp_path / "s.txt"), "--quiet"])
    assert "--out must be a .npy file" in msg and "s.txt" in msg
    assert not out.exists()


def test_subprocess_error_exit_code_and_stderr(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(
        [str(FLOWMATCH), "train", "--out", str(out), "--target", "nosuchset", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith("flowmatch: error: unknown dataset 'nosuchset'")
    assert p.stdout == ""
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# A good run
# --------------------------------------------------------------------------------------------


def test_a_good_train_writes_a_complete_run_directory(good_run):
    for name in ["config.toml", "log.csv", "metrics.json", "samples.png", "trajectories.png", "loss.png"]:
        assert (good_run / name).is_file(), name
    for name in ["samples.png", "trajectories.png", "loss.png"]:
        assert (good_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    latest = (good_run / "checkpoints" / "latest").read_text().strip()
    assert latest == "step-00000020"
    assert (good_run / "checkpoints" / latest / "model.safetensors").is_file()
    assert sorted(p.name for p in (good_run / "checkpoints").glob("step-*")) == ["step-00000010", "step-00000020"]
    rows = log_without_time(good_run)
    assert rows[0] == ["step", "loss", "lr", "grad_norm"]
    assert [r[0] for r in rows[1:]] == ["5", "10", "15", "20"]
    m = json.loads((good_run / "metrics.json").read_text())
    assert m["train"]["steps"] == 20 and m["method"] == "ot-cfm" and m["target"] == "8gaussians"
    assert m["train"]["final_loss"] == pytest.approx(float(rows[-1][1]), rel=1e-5)
    assert m["eval"]["w2"] > 0 and m["eval"]["nfe"] == 4 and m["eval"]["n_test"] == 64


def test_train_from_a_runs_config_repeats_it_bit_for_bit(tmp_path, good_run):
    run2 = tmp_path / "run2"
    assert (
        main(
            [
                "train",
                "--config",
                str(good_run / "config.toml"),
                "--out",
                str(run2),
                "--no-plots",
                "--quiet",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert_same_weights(good_run, run2)
    assert (run2 / "config.toml").read_text() == (good_run / "config.toml").read_text()
    assert log_without_time(run2) == log_without_time(good_run)


def test_flags_override_the_config_file(tmp_path, good_run):
    """--steps 10 over the 20-step config: the result is the 20-step run's step-10 checkpoint
    (constant lr, so the first 10 steps of both runs are the same)."""
    run3 = tmp_path / "run3"
    assert (
        main(
            [
                "train",
                "--config",
                str(good_run / "config.toml"),
                "--steps",
                "10",
                "--out",
                str(run3),
                "--no-plots",
                "--quiet",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    ck = load_checkpoint(run3 / "checkpoints")
    ref = load_checkpoint(good_run / "checkpoints" / "step-00000010")
    assert ck.step == 10
    for k in ref.model:
        assert torch.equal(ck.model[k], ref.model[k])


def test_cli_resume_equals_a_straight_run(tmp_path):
    base = ["--target", "moons", "--ema-decay", "0.9", *TINY, "--no-plots"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "--out", str(straight), *with_flags(base, steps=20)]) == 0
    assert main(["train", "--out", str(split), *with_flags(base, steps=10)]) == 0
    assert main(["train", "--resume", "--out", str(split), "--steps", "20", "--quiet", "--threads", "1"]) == 0
    assert_same_weights(straight, split)
    a, b = load_checkpoint(straight / "checkpoints"), load_checkpoint(split / "checkpoints")
    assert a.step == b.step == 20
    for k in a.ema:
        assert torch.equal(a.ema[k], b.ema[k])
    assert log_without_time(straight) == log_without_time(split)


def test_keyboard_interrupt_exits_130_and_resume_finishes_like_a_straight_run(capsys, tmp_path, monkeypatch, good_run):
    """Ctrl-C at step 13 of the 20-step run (simulated: the gaussian source raises on its 13th draw,
    before the step starts): exit 130, a checkpoint at step 12, and --resume gives the same weights
    as the uninterrupted good_run."""
    from flowmatch.data.batches import StreamBatches

    original = StreamBatches.__call__
    calls = {"n": 0}

    def interrupting(self, n, generator=None):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return original(self, n, generator=generator)

    run = tmp_path / "run"
    monkeypatch.setattr(StreamBatches, "__call__", interrupting)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--target", "8gaussians", *TINY, "--no-plots"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert load_checkpoint(run / "checkpoints").step == 12
    assert (run / "config.toml").is_file()
    monkeypatch.setattr(StreamBatches, "__call__", original)
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--threads", "1", "--no-plots"]) == 0
    assert_same_weights(good_run, run)
    assert log_without_time(run) == log_without_time(good_run)


def test_resuming_a_finished_run_keeps_valid_metrics(tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    before = json.loads((run / "metrics.json").read_text())["train"]["final_loss"]
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--threads", "1", "--no-plots"]) == 0
    assert_same_weights(good_run, run)

    def reject(constant):
        raise ValueError(f"metrics.json holds {constant}, which is not JSON")

    after = json.loads((run / "metrics.json").read_text(), parse_constant=reject)
    assert after["train"]["final_loss"] == before


def test_sample_integrates_the_trained_flow_with_euler(tmp_path, good_run):
    out, traj = tmp_path / "s.npy", tmp_path / "traj.npy"
    assert (
        main(
            [
                "sample",
                str(good_run),
                "--n",
                "50",
                "--solver",
                "euler",
                "--steps",
                "4",
                "--seed",
                "3",
                "--out",
                str(out),
                "--trajectory",
                str(traj),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    x = np.load(out)
    assert x.shape == (50, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    tr = torch.from_numpy(np.load(traj))
    assert tr.shape == (5, 50, 2)
    assert torch.equal(tr[-1], torch.from_numpy(x))
    # each saved state is one Euler step of the run's model: x_{k+1} = x_k + h v(x_k, t_k)
    model = load_run(good_run, device="cpu").model
    with torch.no_grad():
        for k in range(4):
            t = torch.full((50,), k / 4)
            torch.testing.assert_close(tr[k + 1], tr[k] + 0.25 * model(tr[k], t), rtol=1e-5, atol=1e-5)
    # the flow moved the points; the seed fixes the source draw
    assert (tr[-1] - tr[0]).norm(dim=1).mean() > 0.1
    again = tmp_path / "again.npy"
    assert (
        main(
            [
                "sample",
                str(good_run),
                "--n",
                "50",
                "--solver",
                "euler",
                "--steps",
                "4",
                "--seed",
                "3",
                "--out",
                str(again),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    assert np.array_equal(np.load(again), x)


def test_sample_dimension_follows_a_3d_file_target(tmp_path, files):
    """A gaussian source takes the dimension of a (N, 3) file target; samples are (N, 3)."""
    run = tmp_path / "run3d"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--target",
                str(files["3d"]),
                "--no-plots",
                *with_flags(TINY, steps=4, n_test=20),
            ]
        )
        == 0
    )
    out = tmp_path / "s3.npy"
    assert main(["sample", str(run), "--n", "7", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    assert np.load(out).shape == (7, 3)


def test_eval_json_reports_the_same_w2_as_training(capsys, good_run):
    capsys.readouterr()
    assert main(["eval", str(good_run), "--json", "--device", "cpu"]) == 0
    rep = json.loads(capsys.readouterr().out)
    trained = json.loads((good_run / "metrics.json").read_text())["eval"]
    assert rep["w2"] == pytest.approx(trained["w2"], rel=1e-6)
    assert rep["solver"] == "euler" and rep["steps"] == 4 and rep["nfe"] == 4 and rep["n_test"] == 64
    assert {"w1", "mmd", "npe", "straightness", "nfe_dopri5", "w2_dopri5"} <= set(rep)


def test_eval_json_in_a_subprocess(good_run):
    p = subprocess.run(
        [str(FLOWMATCH), "eval", str(good_run), "--json", "--n", "32", "--steps", "2", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["n_test"] == 32 and rep["nfe"] == 2 and rep["w2"] > 0


def test_plot_redraws_the_plots(capsys, good_run):
    for name in ["samples.png", "trajectories.png", "loss.png"]:
        (good_run / name).unlink()
    assert main(["plot", str(good_run), "--steps", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for name in ["samples.png", "trajectories.png", "loss.png"]:
        assert (good_run / name).read_bytes()[:4] == b"\x89PNG"
        assert name in out
