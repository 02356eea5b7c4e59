"""Where flowmatch keeps what it builds once and reuses (compiled kernels, synthesised corpora):
``$FLOWMATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/flowmatch``, else ``~/.cache/flowmatch``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """The cache directory (not created here): $FLOWMATCH_CACHE_DIR, else $XDG_CACHE_HOME/flowmatch."""
    env = os.environ.get("FLOWMATCH_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowmatch"
