"""The house plan (issue 16): one subpackage per concept, imports pointing down the flow of data
only, no import cycles between modules, no private names imported across modules, no module over
400 lines. Reads the sources with ``ast`` (imports inside functions count too)."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "flowmatch"

#: The layers, bottom first: a module may import from its own layer and the layers before it.
LAYERS = [
    "_utils",
    "manifolds",
    "data",
    "ot",
    "couplings",
    "paths",
    "models",
    "sampling",
    "objectives",
    "training",
    "metrics",
    "trajectory",
    "plots",
    "runs",
    "bench",
    "cli",
]
#: Top-level modules outside the layers: the package's lazy public surface, the deprecated old
#: paths, and ``python -m flowmatch``.
TOP = {"flowmatch", "flowmatch._compat", "flowmatch.__main__"}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(PKG.rglob("*.py")):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported flowmatch module, names taken from it) for every import statement in the module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "flowmatch"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "flowmatch":
                continue
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{base}.{n}" in MODULES]
            out += [(f"{base}.{n}", []) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest:
                out.append((base, rest))
    return out


def _layer(name: str) -> int | None:
    if name in TOP:
        return None
    return LAYERS.index(name.split(".")[1])


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for mod, _ in _imports(name, path):
            while mod not in MODULES and "." in mod:
                mod = mod.rsplit(".", 1)[0]
            if mod in MODULES and mod != name:
                deps.add(mod)
        edges[name] = deps
    return edges


def test_every_module_belongs_to_a_layer():
    stray = [n for n in MODULES if n not in TOP and n.split(".")[1] not in LAYERS]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_imports_point_down_the_layers_only():
    upward = []
    for name, deps in _edges().items():
        mine = _layer(name)
        if mine is None:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs is None or theirs > mine:
                upward.append(f"{name} -> {dep}")
    assert not upward, "imports pointing up the layers:\n" + "\n".join(sorted(upward))


def test_the_module_graph_has_no_cycles():
    edges = _edges()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        state[v] = 1
        stack.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                cycles.append(" -> ".join(stack[stack.index(w) :] + [w]))
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(edges):
        if v not in state:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_is_imported_across_modules():
    private = []
    for name, path in MODULES.items():
        for mod, names in _imports(name, path):
            bad = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if bad:
                private.append(f"{name}: from {mod} import {', '.join(bad)}")
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_no_module_is_over_400_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}, {n: k for n, k in long.items() if k > MAX_LINES}


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The checks above can fail: a data module importing the trainer is upward, and two modules
    importing each other are a cycle."""
    fake = {
        "flowmatch.data.x": tmp_path / "x.py",
        "flowmatch.data.y": tmp_path / "y.py",
        "flowmatch.training.trainer": tmp_path / "t.py",
    }
    fake["flowmatch.data.x"].write_text("from flowmatch.training.trainer import Trainer\nimport flowmatch.data.y\n")
    fake["flowmatch.data.y"].write_text("from flowmatch.data import x\n")
    fake["flowmatch.training.trainer"].write_text("")
    monkeypatch.setattr(__import__(__name__), "MODULES", fake)
    with pytest.raises(AssertionError, match="flowmatch.data.x -> flowmatch.training.trainer"):
        test_imports_point_down_the_layers_only()
    with pytest.raises(AssertionError, match="flowmatch.data.x -> flowmatch.data.y -> flowmatch.data.x"):
        test_the_module_graph_has_no_cycles()


@pytest.mark.parametrize(
    "old, new",
    [
        ("flowmatch.train", "flowmatch.training.trainer"),
        ("flowmatch.solvers", "flowmatch.sampling.ode"),
        ("flowmatch.run", "flowmatch.runs.run"),
    ],
)
def test_old_import_paths_still_work_with_a_deprecation_warning(old, new):
    import importlib
    import sys

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_the_package_exposes_the_concepts_as_attributes():
    import flowmatch

    for name in (
        "manifolds",
        "data",
        "ot",
        "couplings",
        "paths",
        "sampling",
        "models",
        "objectives",
        "training",
        "metrics",
        "trajectory",
        "runs",
        "methods",
        "Trainer",
        "sample",
        "sample_sde",
        "log_likelihood",
        "FlowMatcher",
    ):
        assert getattr(flowmatch, name) is not None, name
