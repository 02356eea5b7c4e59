"""The optimisation loop and everything around it: :class:`Trainer` (:mod:`.trainer`), AdamW,
learning-rate schedules and EMA (:mod:`.optim`), atomic checkpoints (:mod:`.checkpoint`),
log.csv (:mod:`.log`), signals (:mod:`.interrupt`), pairings solved ahead (:mod:`.prefetch`),
data parallelism (:mod:`.distributed`), GPU speed options (:mod:`.speed`), rectified flow's
reflow (:mod:`.reflow`) and distillation into a few-step student (:mod:`.distill`)."""

from flowmatch.training.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from flowmatch.training.interrupt import Interrupted
from flowmatch.training.optim import EMA, learning_rate
from flowmatch.training.trainer import Trainer, TrainerConfig, TrainResult, resolve_device

__all__ = [
    "Trainer",
    "TrainerConfig",
    "TrainResult",
    "resolve_device",
    "EMA",
    "learning_rate",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "Interrupted",
]
