"""What an installed release needs (issue 20, part 4): `flowmatch --version` from the one version
in the sources, the CHANGELOG at that version, the extras that keep the core install small (each
package of theirs pinned for CI), and `flowmatch demo --quick`, the smoke test the wheel check runs
from a fresh virtualenv (.ci/wheel_check.sh)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flowmatch.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_quick_trains_samples_evaluates_and_plots_in_seconds(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["settings"]["steps"] == 300 and summary["n_test"] == 500
    floor = summary["w2_sampling_floor"]
    for method in ("ot-cfm", "i-cfm"):
        run = json.loads((out / method / "metrics.json").read_text())
        assert run["train"]["steps"] == 300
        w2 = summary["methods"][method]["w2"]
        # N(0, I) itself scores W2 1.16 against 500 moons points; 300 steps halve it, the floor is 0.20
        assert floor < w2 < 0.8, (method, w2)
        assert re.search(rf"\| {method} +\| {w2:.4f} ", printed), printed
    for name in ("samples", "trajectories", "loss"):
        with Image.open(out / f"{name}.png") as im:
            assert im.size[0] > 100 and im.size[1] > 100
