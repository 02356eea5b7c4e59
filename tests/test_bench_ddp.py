"""`flowmatch bench ddp --quick`: 1 and 2 processes (one torchrun launch), local vs global coupling."""

from __future__ import annotations

import json
import math

from flowmatch.cli import main


def test_bench_ddp_quick_reports_every_row(tmp_path, capsys):
    assert main(["bench", "ddp", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    res = json.loads((tmp_path / "results.json").read_text())
    rows = res["rows"]
    assert [(r["method"], r["processes"], r["coupling scope"]) for r in rows] == [
        ("ot-cfm", "1", "-"),
        ("ot-cfm", "1", "-"),
        ("ot-cfm", "2", "local"),
        ("ot-cfm", "2", "global"),
        ("i-cfm", "2", "local"),
    ]
    b = res["settings"]["batch_size"]
    for r in rows:  # the global batch is the processes' rows together
        assert int(r["global batch"]) == int(r["processes"]) * int(r["batch per process"])
    # global coupling solves one problem over both processes' rows, local one per process
    assert rows[3]["OT problem"] == f"{2 * b} rows" and rows[2]["OT problem"] == f"2 x {b} rows"
    for runs in res["runs"].values():
        assert len(runs) == res["settings"]["seeds"]
        for run in runs:
            assert run["steps_per_s"] > 0 and math.isfinite(run["npe"]) and run["npe"] >= 0 and run["w2"] > 0
    assert (tmp_path / "table.md").read_text().strip().endswith(printed.strip().splitlines()[-2])
