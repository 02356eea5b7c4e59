"""``flowmatch bench manifold``: the table and CSV of a quick run, its rows scored consistently
(the floor and the exact NLL do not depend on the method), and its bad input."""

from __future__ import annotations

import csv

import pytest

from flowmatch.bench.manifold import EULER_STEPS, ManifoldBenchSettings, run_manifold_bench
from flowmatch.cli import main
from flowmatch.plots.manifold import chart


@pytest.mark.slow
def test_a_quick_bench_writes_its_table_and_rows(tmp_path):
    settings = ManifoldBenchSettings.quick(methods=("i-cfm", "ot-cfm"), steps=30)
    res = run_manifold_bench(tmp_path, settings, log=None)
    rows = list(csv.DictReader(open(res.files["results"])))
    assert [(r["task"], r["method"]) for r in rows] == [
        ("sphere", "i-cfm"),
        ("sphere", "ot-cfm"),
        ("torus", "i-cfm"),
        ("torus", "ot-cfm"),
    ]
    for task in ("sphere", "torus"):
        mine = [r for r in rows if r["task"] == task]
        assert mine[0]["nll_exact"] == mine[1]["nll_exact"] and mine[0]["mmd_floor"] == mine[1]["mmd_floor"]
        # the model cannot beat the exact density by much on held-out points (KL >= 0, up to sampling)
        assert all(float(r["nll"]) > float(r["nll_exact"]) - 0.2 for r in mine)
    assert all(f"MMD² Euler {k}" in res.table for k in EULER_STEPS)


def test_bad_bench_input_is_exit_code_2(tmp_path, capsys):
    assert main(["bench", "manifold", "--tasks", "cube", "--out", str(tmp_path / "b"), "--quick"]) == 2
    assert "tasks must be among sphere, torus, got cube" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_the_sphere_chart_is_longitude_and_height():
    import math

    import torch

    xy = chart("sphere", torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]))
    assert xy[0].tolist() == pytest.approx([math.pi / 2, 0.0])
    assert xy[1][1] == pytest.approx(1.0) and abs(xy[2][0]) == pytest.approx(math.pi)
    with pytest.raises(ValueError, match=r"torus points must have shape \(n, 2\)"):
        chart("torus", torch.zeros(3, 3))
