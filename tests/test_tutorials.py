"""The tutorials run: every docs/tutorials/*.py with ``--quick`` (seconds each), and the output its
page shows (from a full run) is the output of this script: the same lines, up to the numbers."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))
PAGES = sorted((ROOT / "docs" / "tutorials").glob("*.md"))


def _page_of(script: Path) -> Path:
    include = f'--8<-- "{script.relative_to(ROOT).as_posix()}"'
    pages = [p for p in PAGES if include in p.read_text()]
    assert len(pages) == 1, f"{script.name}: included by {len(pages)} pages of docs/tutorials (want one)"
    return pages[0]


def _shape(text: str) -> list[str]:
    """The lines with every number replaced by '#' and runs of spaces by one."""
    return [
        " ".join(re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?%?", "#", line).split()) for line in text.strip().splitlines()
    ]


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 2


@pytest.mark.parametrize("script", TUTORIALS, ids=[s.name for s in TUTORIALS])
def test_tutorial_runs_quick_and_prints_what_its_page_shows(script, tmp_path):
    page = _page_of(script)
    shown = re.search(r"```text\n(.*?)```", page.read_text(), re.S)
    assert shown, f"{page.name} shows no output (a ```text block)"
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else src
    proc = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert _shape(proc.stdout) == _shape(shown.group(1)), proc.stdout
    assert list(tmp_path.iterdir()) == []  # a tutorial writes nothing
