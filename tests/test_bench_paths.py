"""`flowmatch bench paths`: every cell is measured, one DDIM step is one Euler step on CondOT, the
table and CSV are written, bad settings are one-line errors."""

from __future__ import annotations

import csv
import math

import pytest

from flowmatch.bench.paths import PathsSettings, run_paths
from flowmatch.cli import main


def test_quick_rows_and_the_one_step_identity(tmp_path):
    settings = PathsSettings(
        tasks=("moons", "digits"), targets=("velocity", "x1"), time_samplers=("uniform",), steps=20, n_eval=64
    )
    res = run_paths(tmp_path, settings, log=None)
    # 2 tasks x 2 targets x 1 time sampler x (ode, sde) x (1, 4, 100) steps
    assert len(res.rows) == 24
    for r in res.rows:
        assert math.isfinite(r["w2"]) and r["w2"] > 0
        assert ("fd" in r) == (r["task"] == "digits")
    # one step from t = 0 to 1 on CondOT: Euler gives x0 + (x1_hat - x0) = x1_hat, the DDIM step
    # alpha_1 x1_hat: the same points, the same W2 (the SDE's noise enters only where sigma_t' > 0)
    for task in ("moons", "digits"):
        for target in ("velocity", "x1"):
            one = {r["sampler"]: r["w2"] for r in res.rows if (r["task"], r["target"], r["steps"]) == (task, target, 1)}
            assert one["ode"] == pytest.approx(one["sde"], rel=1e-6)
    text = (tmp_path / "table.md").read_text()
    assert "**moons: W2**" in text and "**digits: FD (pixels)**" in text
    assert "| velocity | uniform |" in text
    with open(tmp_path / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 24


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="tasks must be among moons, digits, got cifar"):
        run_paths(tmp_path, PathsSettings(tasks=("cifar",)), log=None)
    assert main(["bench", "paths", "--quick", "--targets", "noise", "--out", str(tmp_path), "--quiet"]) == 2
    assert "targets must be among velocity, x1, eps, score" in capsys.readouterr().err
    assert main(["bench", "paths", "--quick", "--steps", "0", "--out", str(tmp_path), "--quiet"]) == 2
