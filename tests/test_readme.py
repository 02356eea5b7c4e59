"""The docs run as written: the README's set-up commands, every ```python block of README.md and
docs/**/*.md (each in its own process, in a fresh directory, with a time limit) and every command line
of their ```bash blocks (each `flowmatch ...` line parses with the real parser; the encode and
report-only lines also run). A block that only includes a file (``--8<-- "path"``, the tutorials'
scripts) is not a block of its own: tests/test_tutorials.py runs those scripts.

A block that cannot run in seconds is marked with ``<!-- docs-test: skip (reason) -->`` on the
line directly above its fence, and listed in ``SKIPPED`` below (so a skip is never silent).
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from flowmatch.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP_MARK = re.compile(r"<!-- docs-test: skip \((.+)\) -->")

#: (file, first line of the block) -> reason; must equal the skip markers found in the docs.
SKIPPED: dict[tuple[str, int], str] = {}

#: Run directories a block reads, trained first (briefly, no final evaluation) in its working
#: directory with the settings of the docs' command that makes them: path -> RunConfig fields.
PREREQUISITES = {
    "runs/digits": dict(
        target="digits", cond="label", guidance_dropout=0.1, steps=2, batch_size=16, unet_width=8, n_test=20
    ),
    "runs/8g": dict(source="gaussian", target="8gaussians", method="ot-cfm", steps=20, n_test=100),
}


def _blocks(lang: str):
    """(file path relative to the root, line of the fence, code, skip reason or None) for every
    ```lang block of the docs."""
    for path in DOCS:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```" + lang:
                start = i
                j = i + 1
                while lines[j].strip() != "```":
                    j += 1
                skip = SKIP_MARK.fullmatch(lines[start - 1].strip()) if start else None
                body = lines[start + 1 : j]
                if not all(line.startswith("--8<--") for line in body):  # an include is not a block
                    yield path.relative_to(ROOT).as_posix(), start + 1, "\n".join(body) + "\n", skip and skip.group(1)
                i = j
            i += 1


PYTHON_BLOCKS = list(_blocks("python"))
QUICKSTART = re.search(r"## Python quickstart\s+```python\n(.*?)```", README, re.S).group(1)
BASH_BLOCKS = list(_blocks("bash"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else src
    return env


def _prepare(code: str, cwd: Path, monkeypatch) -> None:
    """Make the run directories the code reads (in this process: no second torch import)."""
    from flowmatch.runs.config import RunConfig
    from flowmatch.runs.run import train_run

    monkeypatch.chdir(cwd)
    for path, fields in PREREQUISITES.items():
        if f'"{path}"' in code or f" {path}" in code:
            train_run(RunConfig(**fields), path, quiet=True, evaluate=False, plots=False)


def _commands(code: str) -> list[list[str]]:
    """The command lines of a bash block, shlex-split (continuations joined, comments dropped)."""
    text = code.replace("\\\n", " ")
    return [argv for line in text.splitlines() if (argv := shlex.split(line, comments=True))]


def test_readme_opens_with_make_demo_and_make_test():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert README.index("make demo") < README.index("## Python quickstart")


def test_every_skipped_block_is_listed():
    found = {(name, line): reason for name, line, _, reason in PYTHON_BLOCKS + BASH_BLOCKS if reason}
    assert found == SKIPPED
    assert len(PYTHON_BLOCKS) >= 6 and len(BASH_BLOCKS) >= 9  # the extraction found the blocks


@pytest.mark.parametrize("name,line,code,skip", PYTHON_BLOCKS, ids=[f"{n}:{i}" for n, i, _, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_written(name, line, code, skip, tmp_path, monkeypatch):
    if skip:
        pytest.skip(skip)
    if code == QUICKSTART:
        pytest.skip("run twice by test_python_quickstart_prints_what_it_says")
    _prepare(code, tmp_path, monkeypatch)
    script = tmp_path / "block.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_env()
    )
    assert proc.returncode == 0, f"{name}:{line}\n{proc.stderr}"


def test_python_quickstart_prints_what_it_says(tmp_path):
    assert len(QUICKSTART.strip().splitlines()) <= 25
    script = tmp_path / "quickstart.py"
    script.write_text(QUICKSTART)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=_env(),
        )
        for _ in range(2)
    ]  # side by side
    runs = [subprocess.CompletedProcess(p.args, 0, *p.communicate(timeout=90)) for p in procs]
    for p, proc in zip(procs, runs):
        assert p.returncode == 0, proc.stderr
    m = re.search(r"W2 = ([0-9.]+), NFE = (\d+)", runs[0].stdout)
    assert m, runs[0].stdout
    assert int(m.group(2)) == 40  # rk4, 10 steps
    # After 1000 OT-CFM steps the samples are moons-shaped: an untrained model scores W2 > 1.5.
    assert float(m.group(1)) < 0.6, runs[0].stdout
    assert runs[0].stdout == runs[1].stdout  # seeded: the same figure every time


def test_every_flowmatch_command_line_parses():
    """Each `flowmatch ...` line of a bash block (and the flowmatch part of a torchrun line) is
    accepted by the real parser: its subcommand and every flag exist and take the values given."""
    parser = build_parser()
    checked = 0
    for name, line, code, skip in BASH_BLOCKS:
        if skip:
            continue
        for argv in _commands(code):
            if argv[0] == "torchrun":
                argv = argv[argv.index("-m") + 1 :]
            if argv[0] == "flowmatch":
                try:
                    parser.parse_args(argv[1:])
                except SystemExit as e:  # code 0: an option that answers and exits (--version)
                    if e.code != 0:
                        pytest.fail(f"{name}:{line}: {shlex.join(argv)} does not parse")
                checked += 1
            elif argv[0] == "python":  # a benchmark script: it exists and has every flag given
                script = (ROOT / argv[1]).read_text()
                for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
                    assert f'"{flag}"' in script, f"{name}:{line}: {argv[1]} has no {flag}"
            elif argv[0] == "pip":  # an install line: the package, with extras that pyproject.toml declares
                _check_pip_line(argv, f"{name}:{line}")
            else:
                assert argv[0] in ("make", "source"), f"{name}:{line}: unchecked command {shlex.join(argv)}"
    assert checked >= 30


def _check_pip_line(argv: list[str], where: str) -> None:
    """``pip install .`` / ``".[extra,...]"`` / ``"flowmatch[extra]"``: only this package, only extras it has."""
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert argv[1] == "install" and len(argv) == 3, f"{where}: unchecked pip line {shlex.join(argv)}"
    m = re.fullmatch(r"(\.|flowmatch)(?:\[([a-z0-9,-]+)\])?", argv[2])
    assert m, f"{where}: pip installs something other than flowmatch: {argv[2]}"
    assert set((m.group(2) or "").split(",")) - {""} <= extras, f"{where}: unknown extra in {argv[2]}"


def test_the_torchrun_line_is_the_nproc_line_by_hand():
    """README: `torchrun ... -m flowmatch train ...` is the same run as the `--nproc 2` line before
    it: the workers get the same arguments (flowmatch.cli.train.worker_argv), and torchrun the
    options flowmatch.training.distributed.launch passes (--standalone: one node, c10d on a free
    local port; max restarts 0)."""
    from torch.distributed.run import get_args_parser

    from flowmatch.cli.train import worker_argv

    block = next(code for _, _, code, _ in BASH_BLOCKS if "torchrun" in code and "--nproc 2" in code)
    lines = _commands(block)
    nproc = next(a for a in lines if a[0] == "flowmatch" and "--nproc" in a and "--max-restarts" not in a)
    by_hand = next(a for a in lines if a[0] == "torchrun")
    parser = build_parser()

    def _without_out(argv):
        i = argv.index("--out")
        return argv[:i] + argv[i + 2 :]

    ours = worker_argv(parser.parse_args(nproc[1:]))
    cut = by_hand.index("-m")
    theirs = worker_argv(parser.parse_args(by_hand[cut + 2 :]))
    assert _without_out(ours) == _without_out(theirs)
    opts = get_args_parser().parse_args([*by_hand[1:cut], "-m", "flowmatch"])
    assert opts.standalone and opts.nproc_per_node == "2" and opts.nnodes in ("1", "1:1") and opts.max_restarts == 0


def test_encode_lines_run_as_written(tmp_path, monkeypatch):
    """The Likelihoods block's sample -> encode -> decode lines, on a short run in runs/8g."""
    block = next(code for _, _, code, _ in BASH_BLOCKS if "flowmatch encode" in code)
    lines = [a for a in _commands(block) if a[:2] in (["flowmatch", "sample"], ["flowmatch", "encode"])]
    assert [a[1] for a in lines] == ["sample", "encode", "encode"]
    _prepare(" runs/8g", tmp_path, monkeypatch)
    for argv in lines:
        assert main(argv[1:]) == 0, shlex.join(argv)
    import numpy as np

    x, x_back = np.load(tmp_path / "x.npy"), np.load(tmp_path / "x_back.npy")
    assert x.shape == (500, 2) and np.abs(x - x_back).max() < 1e-2


def test_report_only_line_as_written_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Before any benchmark ran: one line, exit 2, and no empty runs/bench/paper2d left behind."""
    block = next(code for _, _, code, _ in BASH_BLOCKS if "--report-only" in code)
    argv = next(a for a in _commands(block) if "--report-only" in a)
    monkeypatch.chdir(tmp_path)
    assert main(argv[1:]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flowmatch: error: "), err
    assert list(tmp_path.iterdir()) == []
