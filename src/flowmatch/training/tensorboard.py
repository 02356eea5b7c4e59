"""TensorBoard events of a run (``flowmatch train --log tensorboard``), beside ``log.csv``.

Every row the Trainer writes to ``log.csv`` is also written, at its step, as the scalars
``train/loss``, ``train/lr``, ``train/grad_norm`` and ``train/elapsed_s`` (the values as log.csv has
them, rounded to its 6 significant digits, so the two logs agree) into ``<run>/tensorboard/``; at the
end of a run its figures (samples.png, trajectories.png, loss.png: whatever the run kind plots) are
added there as images ``figures/<name>`` at the final step. ``tensorboard --logdir <run>`` shows them.

TensorBoard is optional (``pip install flowmatch[tensorboard]``): without it ``--log tensorboard`` is
refused with :class:`~flowmatch._utils.optional.MissingDependencyError` before the run starts, and
``log.csv`` and ``loss.png`` are written as always. A resumed run purges the events after its
checkpoint's step (``SummaryWriter(purge_step=...)``), as log.csv drops its rows after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowmatch._utils.optional import check_installed, require

__all__ = ["TensorBoardLog", "log_figures", "check_tensorboard", "TENSORBOARD_DIR", "SCALAR_PREFIX", "FIGURE_PREFIX"]

#: The events' folder inside the run directory.
TENSORBOARD_DIR = "tensorboard"
#: Tags: ``train/<log.csv column>`` for the scalars, ``figures/<plot name>`` for the images.
SCALAR_PREFIX = "train/"
FIGURE_PREFIX = "figures/"

_NEEDS = dict(feature="--log tensorboard", package="tensorboard", extra="tensorboard")


def check_tensorboard() -> None:
    """Raise MissingDependencyError (a one-line ValueError) when the tensorboard package is absent."""
    check_installed("tensorboard", **_NEEDS)


class TensorBoardLog:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``.

    Args:
        log_dir: the events' folder (created).
        purge_step: hide the events of earlier writers at steps >= this (a resumed run: its
            checkpoint's step + 1); None keeps them all.
    """

    def __init__(self, log_dir: str | Path, *, purge_step: int | None = None):
        check_tensorboard()
        board: Any = require("torch.utils.tensorboard", **_NEEDS)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = board.SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """``train/<name>`` = value at ``step`` for every entry, flushed to disk."""
        for name, value in values.items():
            self.writer.add_scalar(SCALAR_PREFIX + name, float(value), int(step))
        self.writer.flush()

    def image(self, name: str, png: str | Path, step: int) -> None:
        """The PNG file ``png`` as the image ``figures/<name>`` at ``step`` (RGB, its own pixels)."""
        import numpy as np
        from PIL import Image

        with Image.open(png) as im:
            pixels = np.asarray(im.convert("RGB"))
        self.writer.add_image(FIGURE_PREFIX + name, pixels, int(step), dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_figures(run_dir: str | Path, figures: Mapping[str, Path], step: int) -> None:
    """Add the run's figures (name -> PNG path, e.g. what ``plot_run`` wrote) to its TensorBoard
    events at ``step``."""
    with TensorBoardLog(Path(run_dir) / TENSORBOARD_DIR) as board:
        for name, path in figures.items():
            board.image(name, path, step)
