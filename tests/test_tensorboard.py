"""--log tensorboard: the scalars of log.csv and the run's figures as TensorBoard events, read back
with TensorBoard's own EventAccumulator; a resumed run's events after its checkpoint purged; the
one-line errors when tensorboard is absent or the backend unknown."""

from __future__ import annotations

import csv
import shutil
import sys

import numpy as np
import pytest
import torch

from flowmatch.cli import main
from flowmatch.training.log import LOG_COLUMNS

TINY = ["--steps", "40", "--log-every", "10", "--batch-size", "64", "--hidden", "16", "--n-train", "256"]
TINY += ["--n-test", "128", "--eval-steps", "5", "--threads", "1", "--quiet"]


@pytest.fixture
def events():
    """Read a run's events: ``{tag: [(step, value), ...]}`` of the scalars and ``{tag: [(step, h, w)]}``
    of the images."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def read(folder):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        tags = acc.Tags()
        scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
        images = {t: [(e.step, e.height, e.width) for e in acc.Images(t)] for t in tags["images"]}
        return scalars, images

    return read


def _log_csv(run):
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_scalars_are_log_csv_and_the_figures_are_the_runs_pngs(tmp_path, events, monkeypatch):
    from PIL import Image

    run = tmp_path / "run"
    assert main(["train", "--method", "ot-cfm", "--log", "tensorboard", "--out", str(run), *TINY]) == 0
    rows = _log_csv(run)
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    scalars, images = events(run / "tensorboard")
    assert set(scalars) == {f"train/{c}" for c in LOG_COLUMNS[1:]}
    for column in LOG_COLUMNS[1:]:
        want = [(int(r["step"]), float(np.float32(float(r[column])))) for r in rows]  # events hold float32
        assert scalars[f"train/{column}"] == want, column
    assert len({v for _, v in scalars["train/loss"]}) > 1  # the loss moved: real values, not one repeated
    for name in ("samples", "trajectories", "loss"):
        with Image.open(run / f"{name}.png") as im:
            w, h = im.size
        assert images[f"figures/{name}"] == [(40, h, w)]
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # evaluating the run needs no TensorBoard
    assert main(["eval", str(run), "--threads", "1", "--quiet"]) == 0


def test_a_resumed_run_purges_the_events_after_its_checkpoint(tmp_path, events):
    """A run of 24 steps checkpointed at 12, resumed from 12 with another learning rate: the events,
    like log.csv, hold each step once, the rows after 12 those of the resumed run."""
    from flowmatch import methods
    from flowmatch.models import MLP
    from flowmatch.training.trainer import Trainer, TrainerConfig

    def trainer(run, lr):
        src = lambda n, generator=None: torch.randn(n, 2, generator=generator)
        tgt = lambda n, generator=None: torch.randn(n, 2, generator=generator) + 3
        settings = TrainerConfig(
            steps=24,
            batch_size=32,
            lr=lr,
            log_every=4,
            checkpoint_every=12,
            keep_checkpoints=5,
            quiet=True,
            log="tensorboard",
        )
        return Trainer(MLP(2, hidden=8), methods.get("i-cfm"), src, tgt, settings, run_dir=run)

    a, b = tmp_path / "a", tmp_path / "b"
    trainer(a, 1e-3).fit()
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-00000012", b / "checkpoints" / "step-00000012")
    (b / "checkpoints" / "latest").write_text("step-00000012\n")
    shutil.copy(a / "log.csv", b / "log.csv")
    shutil.copytree(a / "tensorboard", b / "tensorboard")  # events of steps 4..24 of the first run
    trainer(b, 5e-2).fit(resume=True)
    rows_a, rows_b = _log_csv(a), _log_csv(b)
    assert rows_a[:3] == rows_b[:3] and rows_a[3:] != rows_b[3:]
    scalars, _ = events(b / "tensorboard")
    assert scalars["train/loss"] == [(int(r["step"]), float(np.float32(float(r["loss"])))) for r in rows_b]
    assert scalars["train/lr"][-1] == (24, float(np.float32(5e-2)))


def test_without_tensorboard_the_run_is_refused_in_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    run = tmp_path / "run"
    assert main(["train", "--log", "tensorboard", "--out", str(run), *TINY]) == 2
    hint = "--log tensorboard needs the tensorboard package: pip install flowmatch[tensorboard]"
    assert capsys.readouterr().err == f"flowmatch: error: {hint}\n"
    assert not run.exists()


def test_an_unknown_log_backend_exits_2_naming_the_choices(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--log", "wandb", "--out", str(run), *TINY]) == 2
    assert capsys.readouterr().err == "flowmatch: error: unknown log 'wandb'; choose one of: csv, tensorboard\n"
    assert not run.exists()


def test_the_default_csv_log_writes_no_events(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-plots", *TINY]) == 0
    assert [int(r["step"]) for r in _log_csv(run)] == [10, 20, 30, 40]
    assert not (run / "tensorboard").exists()
    assert 'log = "csv"' in (run / "config.toml").read_text()
