"""Bad input that used to end in a traceback (issue 15, item 8): each case now gives one line
``flowmatch: error: ...`` naming the file or setting, the rule and the value, with exit code 2; a
missing or corrupt newest checkpoint falls back to the previous whole one with a warning."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flowmatch.cli import main
from test_cli import TINY, error_of


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
    argv = {"train": ["train", "--out", str(out), *TINY],
            "sample": ["sample", str(good_run), "--out", str(tmp_path / "s.npy"), "--quiet"],
            "eval": ["eval", str(good_run), "--quiet"]}[command]
    msg = error_of(capsys, [*argv, "--device", "mps"])
    assert "device 'mps' needs Apple's MPS backend" in msg and "--device cpu" in msg
    assert not out.exists() and not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("method, parts", [
    ("ot-cfm", ["sigma must be finite in float32", "got 1e+308"]),
    ("vp-cfm", ["sigma must be finite in float32", "got 1e+308"]),
    ("sb-cfm", ["sigma must keep sb-cfm's entropic regularisation 2 sigma^2 finite", "got sigma 1e+308"]),
])
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
