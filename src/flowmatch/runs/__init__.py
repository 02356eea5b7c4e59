"""Runs: what ``flowmatch train`` builds from a :class:`~flowmatch.runs.config.RunConfig`, and the
run directory it writes (:mod:`.directory`, locked by :mod:`.lock`). :mod:`.run` trains, evaluates,
plots and loads a run; :mod:`.snapshot` and :mod:`.image` are the trajectory and image sides of it,
:mod:`.demo` the built-in demo.

The names are imported on first use, so that the CLI can read a config without importing torch.
"""

import importlib
from typing import Any

_LAZY = {
    name: "flowmatch.runs.run"
    for name in (
        "RunData",
        "LoadedRun",
        "build_data",
        "build_model",
        "train_run",
        "load_run",
        "evaluate_run",
        "plot_run",
    )
}
_LAZY["RunConfig"] = "flowmatch.runs.config"

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowmatch.runs' has no attribute {name!r}")
