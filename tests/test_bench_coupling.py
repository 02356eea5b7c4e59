"""flowmatch bench coupling: the pipeline runs end to end on a tiny setting and its rows say what
the couplings guarantee (exact OT: every pair distinct, cost equal to POT's optimum)."""

from __future__ import annotations

import json
import math

import torch

from flowmatch.bench.coupling import CouplingBenchSettings, WithReplacementOT, run_coupling_bench
from flowmatch.cli import main


def test_tiny_coupling_bench_writes_its_tables(tmp_path):
    s = CouplingBenchSettings(
        dims=(2,), batches=(32,), steps=2, repeats=1, large=(300,), block_size=128, exact_large_max=300, torchcfm=False
    )
    res = run_coupling_bench(tmp_path, s, log=None)
    methods = {r["method"] for r in res.rows}
    assert {"i-cfm", "ot-cfm auction inline", "ot-cfm auction prefetch(1)", "ot-cfm emd inline"} <= methods
    for r in res.rows:
        assert r["step_ms"] > 0 and math.isfinite(r["ratio"])
        if r["method"].startswith("ot-cfm"):
            assert r["distinct"] == 1.0  # a permutation
            assert abs(r["cost_vs_emd"] - 1.0) < 1e-6  # the exact optimum
    large = {r["coupling"]: r for r in res.large_rows}
    assert set(large) == {"block 128 sorted", "block 128 random"}
    assert all(r["cost_vs_exact"] >= 1 - 1e-9 and r["distinct"] == 1.0 for r in large.values())
    assert (tmp_path / "table.md").read_text().startswith("torch threads 1")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["batches"] == [32] and len(saved["steps"]) == len(res.rows)


def test_with_replacement_baseline_repeats_pairs_of_the_exact_plan():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 2
    p = WithReplacementOT()(x0, x1, generator=g)
    from flowmatch.couplings import ExactOT

    exact = ExactOT()(x0, x1).i1
    assert torch.equal(exact[p.i0], p.i1)  # every pair is an optimal pair
    distinct = len(set(p.i0.tolist())) / 200
    assert 0.55 < distinct < 0.72  # about 1 - 1/e


def test_cli_rejects_bad_lists(capsys):
    assert main(["bench", "coupling", "--dims", "2,x", "--quiet"]) == 2
    assert "--dims must be a comma-separated list of positive integers, got '2,x'" in capsys.readouterr().err
