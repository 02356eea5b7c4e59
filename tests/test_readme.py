"""The README's set-up commands and Python quickstart are true."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_make_demo_and_make_test():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert README.index("make demo") < README.index("## Python quickstart")


def test_python_quickstart_runs_as_written(tmp_path):
    code = re.search(r"## Python quickstart\s+```python\n(.*?)```", README, re.S).group(1)
    assert len(code.strip().splitlines()) <= 25
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"W2 = ([0-9.]+), NFE = (\d+)", proc.stdout)
    assert m, proc.stdout
    assert int(m.group(2)) == 40  # rk4, 10 steps
    # After 1000 OT-CFM steps the samples are moons-shaped: an untrained model scores W2 > 1.5.
    assert float(m.group(1)) < 0.6, proc.stdout
