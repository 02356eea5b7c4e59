"""Nothing lost (issue 15, items 1-3): ``--force`` removes only a flowmatch run's own files, one
training at a time per run directory (an OS file lock), and SIGTERM or Ctrl-C (also under
``--nproc 2``) finish the step, checkpoint and exit with the signal's code, so ``--resume``
ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowmatch.cli import main
from flowmatch.runs.directory import MARKER_FILE
from flowmatch.runs.lock import LOCK_FILE, RunLock
from flowmatch.training.checkpoint import latest_checkpoint, load_checkpoint
from test_cli import TINY, assert_same_weights, error_of, log_without_time

FLOWMATCH = Path(sys.executable).parent / "flowmatch"


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in (
        "FLOWMATCH_FAULT_AT_STEP",
        "FLOWMATCH_FAULT_RANK",
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "FLOWMATCH_RUN_LOCK_HELD",
    ):
        env.pop(k, None)
    return env


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety") / "run"
    assert main(["train", "--out", str(out), "--target", "8gaussians", *TINY, "--no-plots"]) == 0
    return out


# --------------------------------------------------------------------------------------------
# 1. --force deletes only what flowmatch wrote
# --------------------------------------------------------------------------------------------


def test_a_new_run_directory_carries_the_marker(good_run):
    assert (good_run / MARKER_FILE).is_file()


def test_force_into_a_project_directory_deletes_nothing(capsys, tmp_path, monkeypatch):
    """The reported accident: ``cd myproject; flowmatch train --force --out .``."""
    project = tmp_path / "myproject"
    (project / "src").mkdir(parents=True)
    (project / "src" / "model.py").write_text("print('mine')\n")
    (project / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(project)
    msg = error_of(capsys, ["train", "--force", "--out", ".", *TINY])
    assert "--force overwrites only flowmatch run directories" in msg and MARKER_FILE in msg
    assert (project / "src" / "model.py").read_text() == "print('mine')\n"
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "src"]


def test_force_refuses_a_run_directory_holding_a_foreign_file(capsys, tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / "my_samples.npy").write_bytes(b"precious")
    before = (run / "config.toml").read_text()
    msg = error_of(capsys, ["train", "--force", "--out", str(run), *TINY])
    assert "'my_samples.npy'" in msg and "removes only what flowmatch wrote" in msg
    assert (run / "my_samples.npy").read_bytes() == b"precious"
    assert (run / "config.toml").read_text() == before
    assert latest_checkpoint(run / "checkpoints") is not None


def test_force_refuses_an_unmarked_directory_even_with_run_file_names(capsys, tmp_path):
    """A user's own config.toml in a directory is not a run: --force must not delete it."""
    d = tmp_path / "exp"
    d.mkdir()
    (d / "config.toml").write_text("steps = 10\n")
    msg = error_of(capsys, ["train", "--force", "--out", str(d), *TINY])
    assert "has no .flowmatch-run marker" in msg and "'config.toml'" in msg
    assert (d / "config.toml").read_text() == "steps = 10\n"


def test_force_restarts_a_run_directory_from_scratch(tmp_path, good_run):
    """--force on a flowmatch run (with a leftover atomic-write temporary) retrains it from step 0:
    the same weights as the original, nothing of the old run left but what the new one wrote."""
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / "checkpoints" / "step-00000999").mkdir()  # would be the "latest" if it were kept
    (run / ".metrics.json.tmp-12345").write_text("{")
    assert main(["train", "--force", "--out", str(run), "--target", "8gaussians", *TINY, "--no-plots"]) == 0
    assert not (run / "checkpoints" / "step-00000999").exists()
    assert not (run / ".metrics.json.tmp-12345").exists()
    assert load_checkpoint(run / "checkpoints").step == 20
    assert_same_weights(good_run, run)
    assert (run / MARKER_FILE).is_file()


# --------------------------------------------------------------------------------------------
# 2. one training at a time per run directory
# --------------------------------------------------------------------------------------------


def _hold_lock(run: Path) -> subprocess.Popen:
    """A process that takes the run's lock and sleeps (prints 'locked' once it holds it)."""
    code = (
        "import sys, time; from flowmatch.runs.lock import RunLock\n"
        "with RunLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_locked_run_directory_is_refused_with_the_holders_pid_and_freed_by_kill_9(capsys, tmp_path):
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        msg = error_of(capsys, ["train", "--out", str(run), "--target", "8gaussians", *TINY, "--no-plots"])
        assert f"in use by another flowmatch process (pid {holder.pid})" in msg
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # nothing written
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock with the process
        holder.wait()
    assert main(["train", "--out", str(run), "--target", "8gaussians", *TINY, "--no-plots"]) == 0
    assert load_checkpoint(run / "checkpoints").step == 20


def test_resume_and_force_are_refused_while_the_run_is_in_use(capsys, tmp_path, good_run):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    holder = _hold_lock(run)
    try:
        for flag in ("--resume", "--force"):
            argv = ["train", flag, "--out", str(run), "--quiet", "--threads", "1", "--no-plots"]
            msg = error_of(capsys, argv if flag == "--resume" else argv + ["--target", "8gaussians", *TINY])
            assert "in use by another flowmatch process" in msg
    finally:
        holder.kill()
        holder.wait()
    assert_same_weights(good_run, run)


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with RunLock(tmp_path / "r"), RunLock(tmp_path / "r"):
        pass
    with RunLock(tmp_path / "r"):  # released: can be taken again
        pass


def test_two_trainings_started_together_into_one_directory_one_wins(tmp_path):
    """Both used to exit 0, the second silently replacing the first's run."""
    run = tmp_path / "run"
    argv = [
        str(FLOWMATCH),
        "train",
        "--out",
        str(run),
        "--target",
        "8gaussians",
        *[a for a in TINY if a != "--quiet"],
        "--steps",
        "300",
        "--checkpoint-every",
        "100",
        "--no-plots",
    ]
    procs = [
        subprocess.Popen(
            argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    lines = [ln for ln in loser.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("flowmatch: error:"), loser
    assert "in use by another flowmatch process" in loser or "exists and is not empty" in loser
    assert load_checkpoint(run / "checkpoints").step == 300


# --------------------------------------------------------------------------------------------
# 3. SIGTERM and Ctrl-C: finish the step, checkpoint, exit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_training_checkpoints_its_step_and_resume_matches_the_straight_run(
    capsys, tmp_path, monkeypatch, good_run, sig
):
    """The signal arrives while step 13 draws its batch (delivered for real, to this process; pairs
    solved inline, so that the 13th draw belongs to step 13; the weights do not depend on it): step 13 completes, a checkpoint of step 13 is written, exit 128 + signum; --resume then ends
    with the weights and log of the uninterrupted run."""
    from flowmatch.data.batches import StreamBatches

    original = StreamBatches.__call__
    calls = {"n": 0}

    def signalling(self, n, generator=None):
        calls["n"] += 1
        if calls["n"] == 13:
            signal.raise_signal(sig)
        return original(self, n, generator=generator)

    run = tmp_path / "run"
    monkeypatch.setattr(StreamBatches, "__call__", signalling)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    capsys.readouterr()
    argv = ["train", "--out", str(run), "--target", "8gaussians", *TINY, "--no-plots", "--coupling-workers", "0"]
    assert main(argv) == 128 + sig
    err = capsys.readouterr().err
    assert err.strip() == (
        f"flowmatch: interrupted by {sig.name} at step 13; a checkpoint was written; continue with --resume"
    )
    assert load_checkpoint(run / "checkpoints").step == 13
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the training's handlers are gone
    monkeypatch.setattr(StreamBatches, "__call__", original)
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--threads", "1", "--no-plots"]) == 0
    assert_same_weights(good_run, run)
    assert log_without_time(run) == log_without_time(good_run)


def _wait_for_log_rows(run: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = run / "log.csv"
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before it was signalled: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("training wrote no log row in time")


def test_sigterm_to_a_real_training_process_saves_and_resumes_bit_exact(tmp_path):
    """What ``timeout``, Slurm and ``docker stop`` do: SIGTERM to the process. Used to lose every step."""
    steps = ["--steps", "4000", "--checkpoint-every", "100000", "--log-every", "50"]
    argv = [str(FLOWMATCH), "train", "--target", "8gaussians", *TINY, *steps, "--no-plots"]
    straight = tmp_path / "straight"
    subprocess.run(argv + ["--out", str(straight)], env=_env(), check=True, stdin=subprocess.DEVNULL)
    run = tmp_path / "run"
    proc = subprocess.Popen(
        argv + ["--out", str(run)], env=_env(), stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    _wait_for_log_rows(run, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    err = proc.stderr.read()
    assert "interrupted by SIGTERM at step" in err and "Traceback" not in err, err
    step = load_checkpoint(run / "checkpoints").step
    assert 50 <= step < 4000
    subprocess.run(
        [str(FLOWMATCH), "train", "--resume", "--out", str(run), "--quiet", "--threads", "1", "--no-plots"],
        env=_env(),
        check=True,
        stdin=subprocess.DEVNULL,
    )
    assert_same_weights(straight, run)


def test_ctrl_c_under_nproc_2_stops_every_worker_at_one_step_with_a_checkpoint(tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the launcher and its workers (one process group); the
    launcher forwards it too. Used to print a 30-line traceback and save nothing."""
    run = tmp_path / "run"
    flags = [
        "--nproc",
        "2",
        "--target",
        "8gaussians",
        "--method",
        "i-cfm",
        "--steps",
        "100000",
        "--batch-size",
        "32",
        "--n-train",
        "200",
        "--n-test",
        "64",
        "--hidden",
        "16",
        "--log-every",
        "20",
        "--checkpoint-every",
        "100000",
        "--device",
        "cpu",
        "--no-plots",
        "--quiet",
    ]
    proc = subprocess.Popen(
        [str(FLOWMATCH), "train", *flags, "--out", str(run)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_log_rows(run, proc, timeout=240)
        os.killpg(proc.pid, signal.SIGINT)  # as the terminal does
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = proc.stderr.read()
    assert rc == 128 + signal.SIGINT, err
    assert "Traceback" not in err, err
    assert "interrupted by SIGINT at step" in err
    ck = load_checkpoint(run / "checkpoints")
    assert 20 <= ck.step < 100000
    assert "generator@rank1" in ck.rng  # both ranks' streams: the checkpoint of a common step


def test_snapshot_runs_under_nproc_2_prepare_their_directory_on_rank_0_only(tmp_path):
    """``--snapshots bifurcation --nproc 2 --force`` failed in 4 of 5 tries (both ranks removed and
    rewrote the directory); now rank 0 alone prepares it, under the run's lock, and the ranks wait."""
    run = tmp_path / "run"
    argv = [
        str(FLOWMATCH),
        "train",
        "--snapshots",
        "bifurcation",
        "--nproc",
        "2",
        "--method",
        "i-cfm",
        "--steps",
        "20",
        "--batch-size",
        "32",
        "--hidden",
        "16",
        "--log-every",
        "5",
        "--checkpoint-every",
        "10",
        "--eval-steps",
        "4",
        "--device",
        "cpu",
        "--no-plots",
        "--quiet",
        "--out",
        str(run),
    ]
    for extra in ([], ["--force"]):
        proc = subprocess.run(
            argv + extra, env=_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert load_checkpoint(run / "checkpoints").step == 20
        assert (run / "metrics.json").is_file() and (run / MARKER_FILE).is_file()


def test_a_really_full_disk_is_one_line_and_the_run_resumes_bit_exact(tmp_path):
    """A tmpfs too small for the run (root only; skipped elsewhere): the write that fails (here in
    safetensors, which reports ENOSPC as its own error) is one line naming the checkpoint, exit 2,
    and the run resumes, once there is room, to the weights of an uninterrupted run."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(disk)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        argv = [
            str(FLOWMATCH),
            "train",
            "--target",
            "8gaussians",
            *TINY,
            "--hidden",
            "32",
            "--steps",
            "400",
            "--checkpoint-every",
            "50",
            "--no-plots",
        ]
        straight = tmp_path / "straight"
        subprocess.run(argv + ["--out", str(straight)], env=_env(), check=True, stdin=subprocess.DEVNULL)
        run = disk / "run"
        proc = subprocess.run(
            argv + ["--out", str(run)], env=_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "cannot write" in lines[0] and "No space left on device" in lines[0]
        assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp")]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        subprocess.run(
            [str(FLOWMATCH), "train", "--resume", "--out", str(run), "--quiet", "--threads", "1", "--no-plots"],
            env=_env(),
            check=True,
            stdin=subprocess.DEVNULL,
        )
        assert_same_weights(straight, run)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
