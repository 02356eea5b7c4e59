"""`flowmatch train --mmap`: a run over memory-mapped .npy files is the run over the files read
whole (same split, batches and weights), and a bad --mmap value is exit code 2 with nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flowmatch.cli import main
from flowmatch.data.mmap import MemmapBatches
from flowmatch.runs.config import RunConfig
from flowmatch.runs.data import build_data
from flowmatch.training.checkpoint import load_checkpoint

ROWS = 70_000  # above 65536: the O(batch) row sampler, not a full permutation


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("npy")
    rng = np.random.default_rng(0)
    np.save(d / "src.npy", rng.standard_normal((ROWS, 2)).astype(np.float32))
    np.save(d / "tgt.npy", (rng.standard_normal((ROWS, 2)) * 0.5 + 3).astype(np.float64))  # float64: cast per batch
    return d / "src.npy", d / "tgt.npy"


def test_build_data_maps_the_files_and_splits_them_as_in_memory(files):
    src, tgt = files
    on = build_data(RunConfig(source=str(src), target=str(tgt), n_test=300, mmap="on").validate())
    off = build_data(RunConfig(source=str(src), target=str(tgt), n_test=300, mmap="off").validate())
    assert set(on.mapped) == {"source", "target"} and not off.mapped
    assert isinstance(on.mapped["target"].array, np.memmap)
    for side in ("source", "target"):
        mapped, split = on.mapped[side], getattr(off, side)
        assert torch.equal(getattr(on, side).test, split.test)
        assert len(mapped) == len(split.train) == ROWS - 300
        k = torch.tensor([0, 5, ROWS - 301])
        assert torch.equal(mapped.gather(k), split.train[k])


def train(out: Path, src: Path, tgt: Path, mmap: str) -> int:
    return main(
        ["train", "--out", str(out), "--source", str(src), "--target", str(tgt), "--mmap", mmap]
        + ["--method", "i-cfm", "--steps", "15", "--batch-size", "64", "--n-test", "200"]
        + ["--hidden", "16", "--depth", "2", "--eval-steps", "2", "--no-plots", "--quiet", "--threads", "1"]
    )


def test_a_mapped_run_trains_the_weights_of_the_in_memory_run(tmp_path, files):
    src, tgt = files
    for mode in ("on", "pread", "off"):  # pread: the mapped rows read by preadv, the same rows
        assert train(tmp_path / mode, src, tgt, mode) == 0
    b = load_checkpoint(tmp_path / "off" / "checkpoints").model
    for mode in ("on", "pread"):
        a = load_checkpoint(tmp_path / mode / "checkpoints").model
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), mode
        assert f'mmap = "{mode}"' in (tmp_path / mode / "config.toml").read_text()


def test_a_bad_mmap_value_is_exit_2_and_writes_nothing(tmp_path, files, capsys):
    src, tgt = files
    assert train(tmp_path / "bad", src, tgt, "yes") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mmap" in err[0] and "'yes'" in err[0], err
    assert not (tmp_path / "bad" / "config.toml").exists()


def test_mapped_train_part_moves_to_a_device_without_copying_the_array(files):
    src, _ = files
    data = build_data(RunConfig(source=str(src), target="moons", n_test=100, mmap="on").validate())
    moved = data.mapped["source"].to("cpu")
    assert isinstance(moved, MemmapBatches) and moved.array is data.mapped["source"].array
