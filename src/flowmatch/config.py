"""RunConfig: every setting of a training run, validated once, stored as config.toml.

`flowmatch train --config run/config.toml` repeats a run; flags given on the command line
override the file. Defaults are the paper's 2D setup (Tong et al. TMLR 2024, Appendix D):
3x64 SELU MLP, AdamW lr 1e-3, weight decay 1e-5, batch 512, 20k steps, 10k train points.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from flowmatch._validate import (
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_probability,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RunConfig", "load_toml", "dump_toml", "SOLVER_CHOICES"]

SOLVER_CHOICES = ("euler", "midpoint", "heun", "rk4", "dopri5")


@dataclass
class RunConfig:
    """All settings of one training run (see ``flowmatch train --help`` for each)."""

    # data
    source: str = "gaussian"
    target: str = "moons"
    n_train: int = 10_000
    n_test: int = 1_000
    test_split: str = "fresh"  # "fresh": independent test draw; "paper": random split of one draw
    # method
    method: str = "ot-cfm"
    sigma: float | None = None  # None: the method's paper default
    # model
    hidden: int = 64
    depth: int = 3
    activation: str = "selu"
    time_embedding: str = "concat"
    # optimisation
    steps: int = 20_000
    batch_size: int = 512
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 1e-5
    grad_clip: float = 0.0  # 0: off
    ema_decay: float = 0.0  # 0: off; else weights averaged with this decay are used to sample
    seed: int = 0
    device: str = "auto"
    # bookkeeping
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    # evaluation at the end of training
    eval_solver: str = "euler"
    eval_steps: int = 100

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RunConfig":
        """Check every field; raise ValueError naming the rule and the value."""
        from flowmatch import methods
        from flowmatch.models.mlp import ACTIVATIONS

        for name in ("source", "target"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"{name} must be a dataset name or file path, got {v!r}")
        spec = methods.spec(self.method)
        if self.sigma is not None:
            self.sigma = check_nonnegative_float("sigma", self.sigma)
            methods.get(self.method, sigma=self.sigma)  # method-specific sigma rules
        if spec.requires_gaussian_source and self.source != "gaussian":
            raise ValueError(
                f"method {self.method!r} flows from N(0, I) and needs --source gaussian, got {self.source!r}"
            )
        for name in ("n_train", "n_test", "hidden", "depth", "steps", "batch_size", "log_every",
                     "checkpoint_every", "keep_checkpoints", "eval_steps"):
            setattr(self, name, check_positive_int(name, getattr(self, name)))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        self.lr = check_positive_float("lr", self.lr)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        self.weight_decay = check_nonnegative_float("weight_decay", self.weight_decay)
        self.grad_clip = check_nonnegative_float("grad_clip", self.grad_clip)
        self.ema_decay = check_probability("ema_decay", self.ema_decay)
        if self.ema_decay == 1.0:
            raise ValueError("ema_decay must be < 1 (1 would freeze the average), got 1.0")
        check_choice("test_split", self.test_split, ("fresh", "paper"))
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("time_embedding", self.time_embedding, ("concat", "sinusoidal"))
        check_choice("eval_solver", self.eval_solver, SOLVER_CHOICES)
        if not (self.device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        return self

    @property
    def resolved_sigma(self) -> float:
        """sigma, with the method's default filled in."""
        from flowmatch import methods

        return methods.spec(self.method).default_sigma if self.sigma is None else self.sigma

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a dict (e.g. a TOML table); unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        data = load_toml(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML file of settings (top-level keys, or a single [train] table)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file must exist, got {str(p)!r}")
    try:
        data = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed TOML config {str(p)!r}: {e}") from None
    if set(data) == {"train"} and isinstance(data["train"], dict):
        data = data["train"]
    return data


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write a non-finite float to TOML, got {v!r}")
        return repr(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(d: dict[str, Any], header: str = "") -> str:
    """Write a flat dict as TOML; None values are written as comments (TOML has no null)."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    for k, v in d.items():
        if v is None:
            lines.append(f"# {k} = (default)")
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"

