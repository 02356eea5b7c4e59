"""Tasks, methods and settings of the 2D benchmark (:mod:`flowmatch.bench.paper2d`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from flowmatch._utils.validate import (
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from flowmatch.objectives import methods as method_registry
from flowmatch.runs.config import RunConfig

__all__ = [
    "Task",
    "TASKS",
    "METHODS",
    "Paper2DSettings",
    "Paper2DResult",
    "benchmark_cells",
    "FLOOR_SEED_OFFSET",
    "EVAL_SEED_OFFSET",
]

#: The floor's second test set is drawn from a generator seeded with seed + this offset
#: (the data split of a seed uses seed + flowmatch.runs.run.DATA_SEED_OFFSET).
FLOOR_SEED_OFFSET = 2_000_029
#: The evaluation sets of a seed are the test part of a split drawn with the run seed + this offset.
EVAL_SEED_OFFSET = 3_000_017
#: Version of a cell's trained model (training settings and procedure).
RESULT_VERSION = 1
#: Version of the evaluation protocol; a cell evaluated under another one is re-evaluated from its
#: saved model (no retraining).
EVAL_VERSION = 2
#: Settings that only change the evaluation of a trained model.
EVAL_FIELDS = ("n_eval", "n_sweep", "eval_steps", "euler_steps", "atol", "rtol")
_RUNCONFIG_FIELDS = frozenset(f.name for f in fields(RunConfig))


@dataclass(frozen=True)
class Task:
    """One benchmark task: a source and a target (built-in names) and the papers' label."""

    key: str
    label: str
    source: str
    target: str


TASKS: dict[str, Task] = {
    t.key: t
    for t in [
        Task("n-8gaussians", "N→8gaussians", "gaussian", "8gaussians"),
        Task("moons-8gaussians", "moons→8gaussians", "moons-wide", "8gaussians-wide"),
        Task("n-moons", "N→moons", "gaussian", "moons"),
        Task("n-scurve", "N→scurve", "gaussian", "scurve"),
    ]
}

#: Bench methods: the registry's names, plus ``2-rf`` (the 2-rectified flow, one reflow of rf).
METHODS = ("ot-cfm", "i-cfm", "fm", "sb-cfm", "vp-cfm", "rf", "2-rf")


def check_seq(name: str, values: Sequence[str], choices: Sequence[str]) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out = []
    for v in values:
        if v not in choices:
            raise ValueError(f"unknown {name} {v!r}; choose from: {', '.join(choices)}")
        if v not in out:
            out.append(v)
    if not out:
        raise ValueError(f"at least one {name} is needed, got none")
    return out


@dataclass
class Paper2DSettings:
    """Settings of the 2D benchmark; the defaults are the paper's setup."""

    steps: int = 20_000
    batch_size: int = 512
    seeds: int = 5  # seeds 0 .. seeds-1
    n_train: int = 10_000
    n_test: int = 1_000  # the held-out part of the training draw (the paper's split)
    n_eval: int = 10_000  # evaluation points per distribution (W2, NPE, floor; [SF]2M uses 10k)
    n_sweep: int = 1_000  # the first n_sweep of them score the few-step sweep
    sigma: float = 0.1  # ot-cfm, i-cfm, fm, vp-cfm; sb-cfm keeps its default, rf is 0
    lr: float = 1e-3
    weight_decay: float = 1e-5
    hidden: int = 64
    depth: int = 3
    eval_steps: int = 100  # Euler steps of the main W2 and NPE
    euler_steps: tuple[int, ...] = (1, 2, 4, 8, 100)  # the few-step W2 sweep
    atol: float = 1e-4  # dopri5 NFE tolerance
    rtol: float = 1e-4
    reflow_solver: str = "dopri5"  # the solver that makes the 2-rf pairs
    reflow_tol: float = 1e-5
    #: 0: the final weights are evaluated (the paper's setup); else an exponential moving average
    #: of the weights with this decay (beyond the paper: a variant row, in its own --out)
    ema_decay: float = 0.0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "seeds",
            "n_train",
            "n_test",
            "n_eval",
            "n_sweep",
            "hidden",
            "depth",
            "eval_steps",
        ):
            setattr(self, name, check_positive_int(name, getattr(self, name)))
        for name in ("n_test", "n_eval", "n_sweep"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2, got {getattr(self, name)}")
        if self.n_sweep > self.n_eval:
            raise ValueError(f"n_sweep must not exceed n_eval ({self.n_eval}), got {self.n_sweep}")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size must not exceed n_train ({self.n_train}), got {self.batch_size}")
        self.sigma = check_nonnegative_float("sigma", self.sigma)
        self.lr = check_positive_float("lr", self.lr)
        self.weight_decay = check_nonnegative_float("weight_decay", self.weight_decay)
        self.atol = check_positive_float("atol", self.atol)
        self.rtol = check_positive_float("rtol", self.rtol)
        self.reflow_tol = check_positive_float("reflow_tol", self.reflow_tol)
        self.ema_decay = check_probability("ema_decay", self.ema_decay)
        if self.ema_decay == 1.0:
            raise ValueError("ema_decay must be < 1 (1 would freeze the average), got 1.0")
        if isinstance(self.euler_steps, (int, str)):
            raise ValueError(f"euler_steps must be a sequence of positive integers, got {self.euler_steps!r}")
        self.euler_steps = tuple(dict.fromkeys(check_positive_int("euler_steps", k) for k in self.euler_steps))
        if not self.euler_steps:
            raise ValueError("euler_steps must hold at least one step count, got none")
        RunConfig(device=self.device)  # validates the device name

    @classmethod
    def quick(cls, **overrides: Any) -> Paper2DSettings:
        """A tiny configuration that runs the whole pipeline in seconds (a smoke test, not a result)."""
        base: dict[str, Any] = dict(steps=10, batch_size=64, seeds=1, n_train=256, n_test=128, n_eval=128, n_sweep=128)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def method_sigma(self, method: str) -> float | None:
        """The sigma a method trains with (None: the registry's default, i.e. sb-cfm's 1.0)."""
        if method in ("rf", "2-rf"):
            return 0.0
        if method == "sb-cfm":
            return None
        return self.sigma

    def run_config(self, task: Task, method: str, seed: int) -> RunConfig:
        """The RunConfig of a cell (``2-rf`` uses its parent ``rf`` run's config)."""
        base = "rf" if method == "2-rf" else method
        extra: dict[str, Any] = {}
        if "score" in _RUNCONFIG_FIELDS and getattr(method_registry.spec(base), "learns_score", False):
            # the table's SB-CFM is the flow-only ODE model; its score-learning variant ([SF]2M) is
            # another row of the paper
            extra["score"] = False
        return RunConfig(
            source=task.source,
            target=task.target,
            n_train=self.n_train,
            n_test=self.n_test,
            test_split="paper",
            method=base,
            sigma=self.method_sigma(base),
            hidden=self.hidden,
            depth=self.depth,
            activation="selu",
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            ema_decay=self.ema_decay,
            seed=seed,
            device=self.device,
            eval_solver="euler",
            eval_steps=self.eval_steps,
            **extra,
        )

    def eval_run_config(self, task: Task, seed: int) -> RunConfig:
        """The config whose test split is the evaluation set of a task and seed: ``n_eval`` points
        per distribution drawn as the paper splits (one draw, split at random), independent of
        the training draw (seed + :data:`EVAL_SEED_OFFSET`)."""
        cfg = self.run_config(task, "i-cfm", seed + EVAL_SEED_OFFSET)
        return replace(cfg, n_test=self.n_eval)

    def fingerprint(self, method: str) -> dict[str, Any]:
        """The settings a cell's trained model depends on (compared when a cell is reused)."""
        d = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("seeds", "device", "sigma", "reflow_solver", "reflow_tol", *EVAL_FIELDS)
        }
        d["sigma"] = self.method_sigma(method)
        if not self.ema_decay:  # absent when off: cells computed before the option still match
            del d["ema_decay"]
        if method == "2-rf":
            d["reflow_solver"] = self.reflow_solver
            d["reflow_tol"] = self.reflow_tol
        return d

    def eval_fingerprint(self) -> dict[str, Any]:
        """The settings a cell's metrics depend on beyond its model."""
        d = {k: getattr(self, k) for k in EVAL_FIELDS}
        d["euler_steps"] = list(self.euler_steps)
        d["version"] = EVAL_VERSION
        return d


def benchmark_cells(tasks: Sequence[str], methods: Sequence[str]) -> list[tuple[str, str]]:
    """(task, method) pairs to run; FM needs a Gaussian source, so moons -> 8gaussians has no FM."""
    out = []
    for t in tasks:
        for m in methods:
            if m == "fm" and TASKS[t].source != "gaussian":
                continue
            out.append((t, m))
    return out


@dataclass
class Paper2DResult:
    """What :func:`run_paper2d` did: every cell's row, the floors, the table and the files."""

    rows: list[dict[str, Any]]
    floors: dict[tuple[str, int], float]
    table: str
    computed: list[tuple[str, str, int]] = field(default_factory=list)
    reused: list[tuple[str, str, int]] = field(default_factory=list)
    reevaluated: list[tuple[str, str, int]] = field(default_factory=list)
    missing: list[tuple[str, str, int]] = field(default_factory=list)  # report_only: not finished
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
