"""Bad input that used to end in a traceback (issue 15, item 8): each case now gives one line
``flowmatch: error: ...`` naming the file or setting, the rule and the value, with exit code 2; a
missing or corrupt newest checkpoint falls back to the previous whole one with a warning."""

from __future__ import annotations

import errno
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from flowmatch.cli import main
from flowmatch.training.checkpoint import CheckpointFallbackWarning, latest_checkpoint, load_checkpoint
from test_cli import TINY, assert_same_weights, error_of, log_without_time

STEP10, STEP20 = "step-00000010", "step-00000020"


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A finished 20-step run with checkpoints at steps 10 and 20 (copy it before changing it)."""
    out = tmp_path_factory.mktemp("bad_input") / "run"
    assert main(["train", "--out", str(out), "--target", "8gaussians", *TINY, "--no-plots"]) == 0
    return out


def copy_run(good_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    return run


def truncate(path: Path, keep: int) -> None:
    """Cut a file to its first ``keep`` bytes (a copy cut short, a disk error)."""
    path.write_bytes(path.read_bytes()[:keep])


def resume_output(capsys, run: Path) -> list[str]:
    """``train --resume`` of ``run`` to its 20 steps: exit 0; the lines it printed on stderr."""
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--threads", "1", "--no-plots"]) == 0
    return capsys.readouterr().err.strip().splitlines()


# --------------------------------------------------------------------------------------------
# Settings: config.toml, --device
# --------------------------------------------------------------------------------------------


def test_device_given_as_a_number_in_config_toml_exits_2(capsys, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("device = 5\n")
    out = tmp_path / "out"
    msg = error_of(capsys, ["train", "--config", str(cfg), "--out", str(out), *TINY])
    assert "device must be a string" in msg and "got the number 5" in msg and '"cuda:5"' in msg
    assert not out.exists()


@pytest.mark.skipif(__import__("torch").backends.mps.is_available(), reason="MPS is available here")
@pytest.mark.parametrize("command", ["train", "sample", "eval"])
def test_device_mps_where_it_is_not_available_exits_2(capsys, tmp_path, good_run, command):
    out = tmp_path / "out"
    argv = {
        "train": ["train", "--out", str(out), *TINY],
        "sample": ["sample", str(good_run), "--out", str(tmp_path / "s.npy"), "--quiet"],
        "eval": ["eval", str(good_run), "--quiet"],
    }[command]
    msg = error_of(capsys, [*argv, "--device", "mps"])
    assert "device 'mps' needs Apple's MPS backend" in msg and "--device cpu" in msg
    assert not out.exists() and not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize(
    "method, parts",
    [
        ("ot-cfm", ["sigma must be finite in float32", "got 1e+308"]),
        ("vp-cfm", ["sigma must be finite in float32", "got 1e+308"]),
        ("sb-cfm", ["sigma must keep sb-cfm's entropic regularisation 2 sigma^2 finite", "got sigma 1e+308"]),
    ],
)
def test_sigma_that_overflows_float32_exits_2(capsys, tmp_path, method, parts):
    out = tmp_path / "out"
    msg = error_of(capsys, ["train", "--out", str(out), "--method", method, "--sigma", "1e308", *TINY])
    for part in parts:
        assert part in msg, (part, msg)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Data files
# --------------------------------------------------------------------------------------------


def test_garbage_bytes_in_a_npy_file_exit_2_without_suggesting_to_unpickle(capsys, tmp_path):
    bad = tmp_path / "garbage.npy"
    bad.write_bytes(bytes(range(7, 207)))  # not the .npy magic; np.load called it "pickled data"
    out = tmp_path / "out"
    msg = error_of(capsys, ["train", "--out", str(out), "--target", str(bad), *TINY])
    assert "malformed npy file" in msg and "garbage.npy" in msg
    assert "must start with the bytes b'\\x93NUMPY'" in msg and "got b'\\x07\\x08" in msg
    assert "pickle" not in msg
    assert not out.exists()


def test_an_object_array_npy_file_exits_2_and_is_not_unpickled(capsys, tmp_path):
    import numpy as np

    bad = tmp_path / "objects.npy"
    np.save(bad, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    msg = error_of(capsys, ["train", "--out", str(tmp_path / "out"), "--target", str(bad), *TINY])
    assert "objects.npy" in msg and "dtype object" in msg and "never unpickled" in msg
    assert "allow_pickle" not in msg


# --------------------------------------------------------------------------------------------
# Model size
# --------------------------------------------------------------------------------------------


def test_a_model_too_large_for_memory_exits_2_naming_hidden_and_the_size(capsys, tmp_path):
    """--hidden 10000000: each hidden layer's weight is 10^14 float32 = 400 TB, more than any address
    space; the count comes from the meta device, not from a hard-coded limit."""
    out = tmp_path / "out"
    msg = error_of(capsys, ["train", "--out", str(out), "--target", "moons", *TINY, "--hidden", "10000000"])
    assert "the model must fit in memory" in msg and "hidden = 10000000 (depth 3)" in msg
    assert "needs 800.0 TB for its 2e+14 parameters" in msg and "can't allocate memory" in msg
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Checkpoints: damaged files, a pointer to a missing step, weights of another shape
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated model", "garbage rng", "data cut by one byte", "bad state.json"])
def test_a_damaged_newest_checkpoint_falls_back_and_resume_equals_a_straight_run(capsys, tmp_path, good_run, damage):
    """The newest checkpoint (step 20) damaged: resume warns once, naming it, continues from step 10
    and ends bit for bit where the uninterrupted good_run ended."""
    run = copy_run(good_run, tmp_path)
    ck = run / "checkpoints" / STEP20
    bad = {
        "truncated model": "model.safetensors",
        "garbage rng": "rng.safetensors",
        "data cut by one byte": "optimizer.safetensors",
        "bad state.json": "state.json",
    }[damage]
    if damage == "truncated model":
        truncate(ck / bad, 100)
    elif damage == "garbage rng":
        (ck / bad).write_bytes(b"not a safetensors file")
    elif damage == "data cut by one byte":  # the header is whole: only opening the file finds it
        truncate(ck / bad, (ck / bad).stat().st_size - 1)
    else:
        (ck / bad).write_text('{"step": 20, "optimizer": ')
    err = resume_output(capsys, run)
    assert len(err) == 1, err
    assert err[0].startswith(f"flowmatch: warning: checkpoint {str(ck)!r}") and "is damaged" in err[0]
    assert f"{str(ck / bad)!r}" in err[0]
    assert f"using the newest whole checkpoint {str(run / 'checkpoints' / STEP10)!r}" in err[0]
    assert load_checkpoint(run / "checkpoints").step == 20
    assert_same_weights(good_run, run)
    assert log_without_time(run) == log_without_time(good_run)


def test_latest_naming_a_missing_step_falls_back_and_resume_equals_a_straight_run(capsys, tmp_path, good_run):
    run = copy_run(good_run, tmp_path)
    shutil.rmtree(run / "checkpoints" / STEP20)  # `latest` still names it
    err = resume_output(capsys, run)
    assert len(err) == 1, err
    assert f"checkpoint {str(run / 'checkpoints' / STEP20)!r} (named by" in err[0] and "does not exist" in err[0]
    assert str(run / "checkpoints" / STEP10) in err[0]
    assert_same_weights(good_run, run)
    assert log_without_time(run) == log_without_time(good_run)


def test_eval_and_sample_fall_back_from_a_damaged_newest_checkpoint(capsys, tmp_path, good_run):
    run = copy_run(good_run, tmp_path)
    truncate(run / "checkpoints" / STEP20 / "model.safetensors", 8)
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "5", "--steps", "2", "--out", str(tmp_path / "s.npy"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flowmatch: warning: ") and STEP10 in err[0], err
    assert main(["eval", str(run), "--json", "--steps", "2", "--threads", "1"]) == 0
    assert STEP10 in capsys.readouterr().err


def test_latest_checkpoint_opens_the_files_and_warns_naming_the_damaged_one(tmp_path, good_run):
    """Library level: the fallback needs every file of the checkpoint to open, state.json alone
    is not enough; a checkpoint directory read directly is a ValueError naming the file."""
    ckpts = copy_run(good_run, tmp_path) / "checkpoints"
    model = ckpts / STEP20 / "model.safetensors"
    truncate(model, model.stat().st_size - 1)
    assert (ckpts / STEP20 / "state.json").is_file()
    with pytest.warns(CheckpointFallbackWarning, match=f"{STEP20}.*is damaged.*model.safetensors") as caught:
        assert latest_checkpoint(ckpts) == ckpts / STEP10
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    with pytest.warns(CheckpointFallbackWarning):
        assert load_checkpoint(ckpts).step == 10
    with pytest.raises(ValueError, match="must be a whole safetensors file") as e:
        load_checkpoint(ckpts / STEP20)
    assert str(model) in str(e.value)
    with warnings.catch_warnings():  # a whole newest checkpoint: no warning
        warnings.simplefilter("error")
        assert latest_checkpoint(good_run / "checkpoints") == good_run / "checkpoints" / STEP20


def test_every_checkpoint_damaged_exits_2_naming_the_newest_file(capsys, tmp_path, good_run):
    run = copy_run(good_run, tmp_path)
    truncate(run / "checkpoints" / STEP20 / "model.safetensors", 100)
    truncate(run / "checkpoints" / STEP10 / "model.safetensors", 100)
    before = (run / "config.toml").read_text()
    for argv in (["train", "--resume", "--out", str(run), "--quiet", "--threads", "1"], ["eval", str(run), "--quiet"]):
        msg = error_of(capsys, argv)
        assert f"checkpoint file {str(run / 'checkpoints' / STEP20 / 'model.safetensors')!r}" in msg
        assert "must be a whole safetensors file" in msg and "invalid header length" in msg
    assert (run / "config.toml").read_text() == before


def test_an_unreadable_state_json_exits_2_naming_the_file(capsys, tmp_path, good_run):
    run = copy_run(good_run, tmp_path)
    (run / "checkpoints" / STEP20 / "state.json").write_text("{not json")
    (run / "checkpoints" / STEP10 / "state.json").write_text("[10]")
    msg = error_of(capsys, ["sample", str(run), "--out", str(tmp_path / "s.npy"), "--quiet"])
    assert f"checkpoint file {str(run / 'checkpoints' / STEP20 / 'state.json')!r} must be readable JSON" in msg
    assert "Expecting property name" in msg
    with pytest.raises(ValueError, match="must hold an object with an integer step >= 0, got a JSON list"):
        load_checkpoint(run / "checkpoints" / STEP10)


def test_resume_with_another_hidden_size_exits_2(capsys, tmp_path, good_run):
    run = copy_run(good_run, tmp_path)
    msg = error_of(capsys, ["train", "--resume", "--out", str(run), "--hidden", "32", "--quiet", "--threads", "1"])
    assert "cannot resume with a different hidden: the run has 16, got 32" in msg


@pytest.mark.parametrize("command", ["train", "eval"])
def test_checkpoint_weights_of_another_shape_exit_2_naming_the_parameter_and_both_shapes(
    capsys, tmp_path, good_run, command
):
    """config.toml says hidden = 32, the checkpoint holds a hidden-16 network: the first differing
    parameter and both shapes, not torch's multi-line size-mismatch list."""
    run = copy_run(good_run, tmp_path)
    cfg = run / "config.toml"
    cfg.write_text(cfg.read_text().replace("hidden = 16\n", "hidden = 32\n"))
    argv = (
        ["train", "--resume", "--out", str(run), "--steps", "30", "--quiet", "--threads", "1"]
        if command == "train"
        else ["eval", str(run), "--quiet"]
    )
    msg = error_of(capsys, argv)
    assert (
        f"the weights in {str(run / 'checkpoints' / STEP20 / 'model.safetensors')!r} must have the model's shapes"
        in msg
    )
    assert "'net.0.weight' is (16, 3) there and (32, 3) in the model" in msg
    assert load_checkpoint(run / "checkpoints").step == 20


# --------------------------------------------------------------------------------------------
# Output directory: full or read-only disk
# --------------------------------------------------------------------------------------------


def test_a_full_disk_while_checkpointing_exits_2_and_keeps_no_partial_checkpoint(capsys, tmp_path, monkeypatch):
    """ENOSPC while step 10's weights are written (simulated: the machine cannot be filled in a
    test): one line naming the checkpoint and the reason; no half-written directory is left."""
    import flowmatch.training.checkpoint as checkpoint

    real = checkpoint.save_file

    def full_disk(tensors, filename, *args, **kwargs):
        real(tensors, filename, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    out = tmp_path / "run"
    msg = error_of(capsys, ["train", "--out", str(out), "--target", "moons", *TINY, "--no-plots"])
    assert f"cannot write {str(out / 'checkpoints' / STEP10)!r}: No space left on device" in msg
    assert "must be writable and have free space" in msg
    assert [p.name for p in (out / "checkpoints").iterdir()] == []


def test_a_read_only_run_directory_for_the_plots_exits_2_naming_the_file(capsys, tmp_path, good_run, monkeypatch):
    import flowmatch.plots._common as plots_common

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))

    run = copy_run(good_run, tmp_path)
    monkeypatch.setattr(plots_common.tempfile, "mkstemp", read_only)
    msg = error_of(capsys, ["plot", str(run), "--steps", "2", "--device", "cpu"])
    assert f"cannot write {str(run / 'samples.png')!r}: Read-only file system" in msg


def test_eval_of_an_image_run_without_labels_exits_2(capsys, tmp_path):
    """Image metrics train their classifier on the labels: an unlabelled image run is one line, not
    a crash in the report."""
    rng = np.random.default_rng(0)
    images = tmp_path / "imgs.npy"
    np.save(images, rng.uniform(-1, 1, size=(60, 1, 8, 8)).astype(np.float32))
    run = tmp_path / "run"
    argv = [
        "train",
        "--target",
        str(images),
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--unet-width",
        "8",
        "--unet-attention",
        "none",
        "--eval-steps",
        "2",
        "--threads",
        "1",
        "--quiet",
        "--no-plots",
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    msg = error_of(capsys, ["eval", str(run), "--steps", "2", "--quiet"])
    assert "image evaluation needs labelled images" in msg
