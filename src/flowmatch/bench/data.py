"""Data at scale: ``flowmatch bench data`` (issue 20).

For each number of rows N it writes a ``.npy`` file of N float32 points (``dim`` columns, drawn
in chunks from a seeded generator; a file of the right shape is reused), then trains a 3x64 SELU
MLP with I-CFM from N(0, I) to the rows of the file, memory-mapped
(:class:`~flowmatch.data.mmap.MemmapBatches`: each step reads only its batch rows), for ``steps``
steps at batch 512, in a fresh process (so that its peak resident memory is its own). With
``pread`` it also runs with the rows read by ``os.preadv`` (``MemmapBatches(pread=True)``: no page
of the file enters the resident set), with ``baseline`` on the array read into memory with the sampler of
earlier versions (a full ``torch.randperm(N)`` per step), whose steps/s falls with N.

Reported per row: steps/s (optimisation steps, each drawing its batch, timed after
``warmup`` steps), the time of a batch draw alone (ms), the peak resident memory of the process (VmHWM), and its anonymous (heap) and file-backed (mapped pages) parts at the end
(RssAnon, RssFile), next to the file size. File-backed pages are the kernel's page cache of the
mapped file: only the pages of rows read so far, and reclaimable.

Output: ``table.md`` and ``results.csv`` in ``out``.
"""

from __future__ import annotations

import csv
import io
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from flowmatch._utils.io import atomic_write_text
from flowmatch.metrics.report import format_table

__all__ = ["DataBenchSettings", "DataBenchResult", "run_data_bench", "write_rows", "memory_mb"]


MODE_NAMES = {
    "mmap": "memory-mapped",
    "pread": "memory-mapped, rows read by pread",
    "memory": "in memory, randperm(N) per step",
}


@dataclass(frozen=True)
class DataBenchSettings:
    """What ``flowmatch bench data`` measures."""

    rows: tuple[int, ...] = (10_000, 1_000_000, 10_000_000)
    dim: int = 2
    steps: int = 300
    warmup: int = 20
    batch_size: int = 512
    baseline: bool = True  # also train on the array in memory with a full permutation per step
    pread: bool = False  # also train with the rows read by pread (MemmapBatches(pread=True))
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> DataBenchSettings:
        """A smoke run: 10^4 and 10^5 rows, 30 steps."""
        base = dict(rows=(10_000, 100_000), steps=30, warmup=5)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)  # type: ignore[arg-type]

    @classmethod
    def wide(cls, **overrides) -> DataBenchSettings:
        """The larger-than-memory case: 10^7 rows of 64 float32 (2.56 GB), memory-mapped only."""
        base = dict(rows=(10_000_000,), dim=64, baseline=False, pread=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)  # type: ignore[arg-type]


@dataclass
class DataBenchResult:
    rows: list[dict[str, str]]
    table: str
    files: dict[str, Path]


def write_rows(path: Path, n: int, dim: int, *, seed: int = 0, chunk: int = 1 << 20) -> Path:
    """Write ``n`` rows of ``dim`` float32 to the .npy file ``path`` in chunks (never all in
    memory): N(0, I) points shifted by 3 in the first coordinate. Reuses a file of that shape."""
    if path.is_file():
        try:
            old = np.load(path, mmap_mode="r")
            if old.shape == (n, dim) and old.dtype == np.float32:
                return path
        except (OSError, ValueError):
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    g = torch.Generator().manual_seed(seed)
    for lo in range(0, n, chunk):
        block = torch.randn(min(chunk, n - lo), dim, generator=g)
        block[:, 0] += 3.0
        out[lo : lo + len(block)] = block.numpy()
    out.flush()
    del out
    tmp.replace(path)
    return path


def memory_mb() -> dict[str, float]:
    """This process's peak resident memory and its current anonymous and file-backed parts, in MB
    (/proc/self/status; elsewhere only the peak, from getrusage)."""
    out = {"peak": float("nan"), "anon": float("nan"), "file": float("nan")}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            name = {"VmHWM": "peak", "RssAnon": "anon", "RssFile": "file"}.get(key)
            if name is not None:
                out[name] = int(value.split()[0]) / 1024
    except OSError:
        out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def train_once(path: str, mode: str, steps: int, warmup: int, batch_size: int, seed: int) -> dict[str, float]:
    """Train the 3x64 MLP on ``path`` (``mode``: "mmap", or "memory" with full permutations) for
    ``warmup`` then ``steps`` timed steps, then time ``steps`` batch draws alone; run it in a fresh
    process (:func:`_in_child`) so that its memory is measured alone."""
    torch.set_num_threads(1)
    from flowmatch.data.batches import StreamBatches, TensorBatches
    from flowmatch.data.mmap import MemmapBatches, open_npy
    from flowmatch.models import MLP
    from flowmatch.objectives import methods
    from flowmatch.training.trainer import Trainer, TrainerConfig

    array = open_npy(path)
    dim = int(array.shape[1])
    if mode in ("mmap", "pread"):
        target: MemmapBatches | TensorBatches = MemmapBatches(array, name="rows", pread=mode == "pread")
    else:
        target = TensorBatches(torch.from_numpy(np.array(array)), name="rows", rows="permutation")
    source = StreamBatches(lambda n, generator=None: torch.randn(n, dim, generator=generator))
    torch.manual_seed(seed)
    cfg = TrainerConfig(steps=warmup + steps, batch_size=batch_size, lr=1e-3, seed=seed, quiet=True)
    trainer = Trainer(MLP(dim, hidden=64, depth=3), methods.get("i-cfm"), source, target, cfg)
    for _ in range(warmup):
        trainer.train_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step()
    train_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    for _ in range(steps):
        target(batch_size, generator=g)
    draw_s = time.perf_counter() - t0
    final = float(loss) if loss is not None else float("nan")
    return {"steps_per_s": steps / train_s, "batch_ms": 1e3 * draw_s / steps, "loss": final, **memory_mb()}


def _in_child(*args) -> dict[str, float]:
    """:func:`train_once` in a fresh Python process (its result as one JSON line)."""
    code = "import json, sys; from flowmatch.bench.data import train_once; print(json.dumps(train_once(*json.loads(sys.argv[1]))))"
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the training process failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_data_bench(
    out: str | Path, settings: DataBenchSettings, *, log: Callable[[str], None] | None = print
) -> DataBenchResult:
    """Write the files, train on each (memory-mapped, and in memory with ``baseline``), tabulate."""
    out = Path(out)
    rows: list[dict[str, str]] = []
    for n in settings.rows:
        path = write_rows(out / f"rows-{n}x{settings.dim}.npy", n, settings.dim, seed=settings.seed)
        size_mb = path.stat().st_size / 1e6
        modes = ("mmap",) + (("pread",) if settings.pread else ()) + (("memory",) if settings.baseline else ())
        for mode in modes:
            if log is not None:
                log(f"N={n} dim={settings.dim} ({size_mb:.0f} MB) {mode}: training {settings.steps} steps")
            m = _in_child(str(path), mode, settings.steps, settings.warmup, settings.batch_size, settings.seed)
            rows.append(
                {
                    "rows": f"{n:.0e}".replace("e+0", "e"),
                    "dim": str(settings.dim),
                    "file MB": f"{size_mb:.1f}",
                    "data": MODE_NAMES[mode],
                    "steps/s": f"{m['steps_per_s']:.1f}",
                    "batch ms": f"{m['batch_ms']:.3f}",
                    "peak RSS MB": f"{m['peak']:.0f}",
                    "anon MB": f"{m['anon']:.0f}",
                    "file-backed MB": f"{m['file']:.0f}",
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    table = format_table(rows)
    note = (
        f"\n\n3x64 SELU MLP, I-CFM from N(0, I), batch {settings.batch_size}, {settings.steps} steps, "
        f"1 torch thread; settings: {asdict(settings)}\n"
    )
    atomic_write_text(out / "table.md", table + note)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    return DataBenchResult(rows, table, {"table": out / "table.md", "csv": out / "results.csv"})
