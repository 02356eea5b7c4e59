"""Optional dependencies: imported on first use, and when absent a one-line error that names the
package and the extra that installs it (``pip install flowmatch[single-cell]``), so the core install
stays small (pyproject.toml's ``[project.optional-dependencies]``)."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["MissingDependencyError", "require", "check_installed"]


class MissingDependencyError(ImportError, ValueError):
    """An optional package a feature needs is not installed. An ImportError (what it is) and a
    ValueError (what the ``flowmatch`` command reports as one line, exit code 2)."""


def _message(feature: str, package: str, extra: str) -> str:
    return f"{feature} needs the {package} package: pip install flowmatch[{extra}]"


def check_installed(module: str, *, feature: str, package: str, extra: str) -> None:
    """Raise :class:`MissingDependencyError` when ``module`` cannot be found, without importing it (a
    setting that needs it is refused before any work starts)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        found = False
    if not found:
        raise MissingDependencyError(_message(feature, package, extra), name=module)


def require(module: str, *, feature: str, package: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError`, e.g.
    ``reading .h5ad needs the anndata package: pip install flowmatch[single-cell]``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(_message(feature, package, extra), name=module) from err
