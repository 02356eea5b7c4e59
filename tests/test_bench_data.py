"""`flowmatch bench data`: its files are written in chunks without changing their rows, bad flags
are exit code 2, and a small run tabulates one row per mode."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from flowmatch.bench.data import DataBenchSettings, memory_mb, run_data_bench, write_rows
from flowmatch.cli import main


def test_rows_written_in_chunks_are_the_rows_written_at_once(tmp_path):
    a = write_rows(tmp_path / "a.npy", 1000, 3, seed=4, chunk=1 << 20)
    b = write_rows(tmp_path / "b.npy", 1000, 3, seed=4, chunk=1000)
    whole = np.load(a)
    assert np.array_equal(whole, np.load(b))
    g = torch.Generator().manual_seed(4)
    expected = torch.randn(1000, 3, generator=g)
    expected[:, 0] += 3.0
    assert np.array_equal(whole, expected.numpy())
    mtime = a.stat().st_mtime_ns
    write_rows(a, 1000, 3, seed=4)  # the right shape: kept, not rewritten
    assert a.stat().st_mtime_ns == mtime


def test_memory_is_read_from_proc():
    m = memory_mb()
    assert m["peak"] > 0 and m["peak"] >= m["anon"]


@pytest.mark.parametrize(
    "flags, part",
    [
        (["--rows", "10,x"], "--rows must be comma-separated positive integers, got 'x'"),
        (["--rows", "100"], "--rows must each be >= the batch size 512, got 100"),
        (["--steps", "0"], "--steps must be a positive integer, got 0"),
    ],
)
def test_bad_flags_exit_2_and_write_nothing(tmp_path, capsys, flags, part):
    assert main(["bench", "data", "--out", str(tmp_path / "o"), *flags]) == 2
    assert part in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_small_bench_tabulates_each_file_and_mode(tmp_path):
    res = run_data_bench(tmp_path, DataBenchSettings(rows=(600,), steps=5, warmup=1, batch_size=64), log=None)
    with open(res.files["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["rows"], r["data"].split(",")[0]) for r in rows] == [("6e2", "memory-mapped"), ("6e2", "in memory")]
    assert all(float(r["steps/s"]) > 0 and float(r["peak RSS MB"]) > 0 for r in rows)
