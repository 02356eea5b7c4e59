"""Old import paths of the flat layout (flowmatch 0.1), kept for one release.

``import flowmatch.solvers`` (and ``from flowmatch.train import Trainer``, ...) still work: a
meta-path finder maps each old module name to the module of the new layout and warns once with a
DeprecationWarning naming the new path. The alias is the same module object, so state and
``isinstance`` checks are shared. To be removed in flowmatch 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["MOVED", "install"]

#: old module (under flowmatch) -> its module in the new layout
MOVED = {
    "_io": "_utils.io",
    "_validate": "_utils.validate",
    "conditioning": "data.conditioning",
    "_native": "ot.native",
    "assignment": "ot.assignment",
    "transport": "ot.transport",
    "global_coupling": "couplings.global_coupling",
    "matcher": "objectives.cfm",
    "sf2m": "objectives.sf2m",
    "cnf": "objectives.cnf",
    "methods": "objectives.methods",
    "guidance": "models.guidance",
    "solvers": "sampling.ode",
    "sde": "sampling.sde",
    "likelihood": "sampling.likelihood",
    "train": "training.trainer",
    "train_log": "training.log",
    "optim": "training.optim",
    "interrupt": "training.interrupt",
    "checkpoint": "training.checkpoint",
    "prefetch": "training.prefetch",
    "distributed": "training.distributed",
    "speed": "training.speed",
    "reflow": "training.reflow",
    "evaluate": "metrics.evaluate",
    "image_metrics": "metrics.images",
    "report": "metrics.report",
    "trajectory_inference": "trajectory.inference",
    "gaussian_bridge": "trajectory.gaussian_bridge",
    "config": "runs.config",
    "run_dir": "runs.directory",
    "run": "runs.run",
    "snapshot_run": "runs.snapshot",
    "image_run": "runs.image",
    "demo": "runs.demo",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        return importlib.import_module(self.new)

    def exec_module(self, module) -> None:  # the new module is already executed
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        prefix, _, old = fullname.partition(".")
        if prefix != "flowmatch" or old not in MOVED:
            return None
        new = f"flowmatch.{MOVED[old]}"
        warnings.warn(
            f"{fullname} moved to {new}; the old path will be removed in flowmatch 0.3",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    """Put the finder on sys.meta_path (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
