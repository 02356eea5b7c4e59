"""Fault injection: kill trainings at random points and check that every one resumes to the
weights of an uninterrupted run, bit for bit (issue 15).

Each trial starts ``flowmatch train`` (OT-CFM on N(0, I) -> 8gaussians, a small MLP, the pairing
solved ahead in a worker thread, a checkpoint every 50 steps) and injects one fault, chosen at
random:

- ``sigkill``: ``kill -9`` after a random number of logged steps (possibly mid-write);
- ``sigterm`` / ``sigint``: the signals of ``timeout``/Slurm/``docker stop`` and of Ctrl-C;
- ``full-disk``: the run directory lies on a tmpfs of a random size (48 to 160 KiB), which fills
  up during training (ENOSPC), then grows (``mount -o remount``) for the resume; where this
  process may not mount (not root), a random RLIMIT_FSIZE instead (SIGXFSZ ignored, so writes
  past it fail with EFBIG);
- ``corrupt``: ``kill -9``, then the newest checkpoint's model.safetensors truncated to half.

Then ``flowmatch train --resume`` (or ``--force`` when no checkpoint was written yet) runs the
training to its end, and the final weights are compared with those of the uninterrupted run.
Prints one row per trial and the counts; exits 1 if any trial does not end identical.

    python benchmarks/faults.py --trials 20
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from flowmatch.training.checkpoint import latest_checkpoint, load_checkpoint

FAULTS = ("sigkill", "sigterm", "sigint", "full-disk", "corrupt")
FLAGS = [
    "--source",
    "gaussian",
    "--target",
    "8gaussians",
    "--method",
    "ot-cfm",
    "--steps",
    "600",
    "--batch-size",
    "64",
    "--n-train",
    "1000",
    "--n-test",
    "64",
    "--hidden",
    "32",
    "--log-every",
    "10",
    "--checkpoint-every",
    "50",
    "--coupling-workers",
    "1",
    "--eval-steps",
    "4",
    "--threads",
    "1",
    "--no-plots",
    "--quiet",
]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("FLOWMATCH_RUN_LOCK_HELD", None)
    return env


def _cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "flowmatch", "train", *FLAGS, *extra]


def _logged_steps(run: Path) -> int:
    log = run / "log.csv"
    return max(0, len(log.read_text().splitlines()) - 1) * 10 if log.is_file() else 0


def _limit_writes(nbytes: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return preexec


def _mount(path: Path, size: str, remount: bool = False) -> bool:
    opts = f"remount,size={size}" if remount else f"size={size}"
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


def _full_disk(run: Path, rng: random.Random, mounts: list[Path]) -> str:
    disk = run.parent / (run.name + "-disk")
    kib = rng.randint(48, 160)
    if _mount(disk, f"{kib}k"):
        mounts.append(disk)
        proc = subprocess.run(
            _cmd("--out", str(disk / "run")),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
        _mount(disk, "64m", remount=True)  # space freed for the resume
        run.symlink_to(disk / "run")
        return f"tmpfs of {kib} KiB: exit {proc.returncode}"
    nbytes = rng.randint(500, 20_000)
    proc = subprocess.run(
        _cmd("--out", str(run)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_writes(nbytes),
        timeout=300,
    )
    return f"files limited to {nbytes} B: exit {proc.returncode}"


def _inject(fault: str, run: Path, rng: random.Random, mounts: list[Path]) -> str:
    """Run the training with one fault; return what was done."""
    if fault == "full-disk":
        return _full_disk(run, rng, mounts)
    proc = subprocess.Popen(_cmd("--out", str(run)), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    at = rng.randint(0, 550)
    while proc.poll() is None and _logged_steps(run) < at:
        time.sleep(0.002)
    if proc.poll() is not None:
        return f"finished before step {at}"
    sig = {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT}.get(fault, signal.SIGKILL)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    done = f"{signal.Signals(sig).name} near step {at}: exit {code}"
    if fault == "corrupt":
        ck = latest_checkpoint(run / "checkpoints")
        if ck is None:
            return done + ", no checkpoint to corrupt"
        whole = len(list((run / "checkpoints").glob("step-*")))
        f = ck / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        done += f", {ck.name}/model.safetensors truncated ({whole - 1} older)"
    return done


def _finish(run: Path) -> tuple[int, str]:
    """Resume until the run completes (at most 3 tries); return (exit code, how)."""
    for _ in range(3):
        try:
            has = latest_checkpoint(run / "checkpoints") is not None
        except ValueError:  # every checkpoint damaged (the only one was corrupted): start over
            has = False
        extra = ["--resume"] if has else ["--force"]
        proc = subprocess.run(
            _cmd("--out", str(run), *extra),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
        if proc.returncode == 0:
            return 0, extra[0]
        last = proc.stderr.strip().splitlines()[-1:] or [""]
        how = f"{extra[0]} failed: {last[0][:120]}"
    return proc.returncode, how


def _same(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a / "checkpoints").model, load_checkpoint(b / "checkpoints").model
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {FAULTS}")
    args = p.parse_args()
    faults = args.faults.split(",")
    rng = random.Random(args.seed)
    mounts: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ref = Path(tmp) / "reference"
            subprocess.run(_cmd("--out", str(ref)), env=_env(), check=True, stdout=subprocess.DEVNULL)
            counts = {"identical": 0, "different": 0, "failed": 0}
            print("| trial | fault | what happened | resumed with | identical |\n|---|---|---|---|---|")
            for k in range(args.trials):
                fault = faults[k % len(faults)] if k < len(faults) else rng.choice(faults)
                run = Path(tmp) / f"trial{k}"
                done = _inject(fault, run, rng, mounts)
                code, how = _finish(run)
                same = code == 0 and _same(ref, run)
                counts["identical" if same else ("failed" if code else "different")] += 1
                print(f"| {k} | {fault} | {done} | {how} | {'yes' if same else 'NO'} |", flush=True)
            print(
                f"\n{args.trials} trials: {counts['identical']} identical, {counts['different']} different, "
                f"{counts['failed']} not finished"
            )
            return 0 if counts["identical"] == args.trials else 1
        finally:
            for m in mounts:
                subprocess.run(["umount", str(m)], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
