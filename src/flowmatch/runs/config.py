"""RunConfig: every setting of a training run, validated once, stored as config.toml.

`flowmatch train --config run/config.toml` repeats a run; flags given on the command line
override the file. Defaults are the paper's 2D setup (Tong et al. TMLR 2024, Appendix D):
3x64 SELU MLP, AdamW lr 1e-3, weight decay 1e-5, batch 512, 20k steps, 10k train points.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import asdict, dataclass, fields
from dataclasses import replace as _replace
from pathlib import Path
from typing import Any

from flowmatch._utils.validate import (
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_int,
    check_probability,
)
from flowmatch.runs.config_discrete import check_token_settings
from flowmatch.runs.config_rules import check_sequence_settings, check_snapshot_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RunConfig", "load_toml", "dump_toml", "parse_int_list", "SOLVER_CHOICES", "COND_CHOICES", "MODEL_CHOICES"]

SOLVER_CHOICES = ("euler", "midpoint", "heun", "rk4", "dopri5", "average")
COND_CHOICES = ("none", "label", "text")
MODEL_CHOICES = ("auto", "mlp", "unet", "unet1d", "transformer")


def parse_int_list(name: str, text: str, *, allow_empty: bool = False) -> tuple[int, ...] | None:
    """``"1,2,2"`` -> (1, 2, 2); ``"auto"`` -> None; ``"none"``/``""`` -> () when allowed."""
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a comma-separated list of positive integers or 'auto', got {text!r}")
    t = text.strip().lower()
    if t == "auto":
        return None
    if allow_empty and t in ("", "none"):
        return ()
    try:
        values = tuple(int(v) for v in t.split(","))
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        extra = ", 'none'" if allow_empty else ""
        raise ValueError(f"{name} must be a comma-separated list of positive integers, 'auto'{extra}, got {text!r}")
    return values


#: The RunConfig fields that are the Trainer's settings (checked and passed by TrainerConfig).
TRAINER_FIELDS = (
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "grad_clip",
    "ema_decay",
    "ema_warmup",
    "lr_schedule",
    "seed",
    "log_every",
    "log",
    "checkpoint_every",
    "keep_checkpoints",
    "bf16",
    "compile",
    "tf32",
    "max_bad_steps",
)


@dataclass
class RunConfig:
    """All settings of one training run (see ``flowmatch train --help`` for each)."""

    # data
    source: str = "gaussian"
    target: str = "moons"
    n_train: int = 10_000
    n_test: int = 1_000
    test_split: str = "fresh"  # "fresh": independent test draw; "paper": random split of one draw
    mmap: str = "auto"  # .npy files: "on" maps them, "pread" too (rows by preadv), "off" reads them, "auto" >= 256 MiB
    # Riemannian runs (flowmatch.runs.manifold): "sphere" (S^2) or "torus" (T^2), source uniform on it
    manifold: str = "none"
    # time-labelled snapshot data (.npz/.csv, or the built-in "bifurcation"): trajectory inference
    # across consecutive time points; source and target are then unused (flowmatch.trajectory)
    snapshots: str | None = None
    holdout: int | None = None  # snapshot runs: index of the intermediate time point left out of training
    # .h5ad snapshots (AnnData): the obs column of the time labels (None: the column t or time) and the
    # features: an obsm key, a number of principal components of X computed on load, or None (X itself)
    time_key: str | None = None
    embedding: str | int | None = None
    # method
    method: str = "ot-cfm"
    sigma: float | None = None  # None: the method's paper default
    score: bool | None = None  # learn the score too ([SF]2M); None: the method's default (sb-cfm: true)
    # Gaussian paths (flowmatch.runs.path_options): the path's scheduler ("auto": the method's path),
    # what the network predicts, the loss weighting of x1/eps/score, and the law of t
    scheduler: str = "auto"
    target_param: str = "velocity"
    loss_weighting: str = "default"
    time_sampler: str = "uniform"
    # sequences (flowmatch.runs.sequence): the built-in eSpeak NG corpus ("speech") or a folder of
    # .npz utterances; its size (speech_sentences sentences, each spoken by speech_speakers voices)
    speech_sentences: int = 200
    speech_speakers: int = 4
    # Voicebox infilling: train on spans of span_min..span_max of each utterance, the rest as context
    infill: bool = False
    span_min: float = 0.3
    span_max: float = 1.0
    # conditioning and classifier-free guidance
    cond: str = "none"  # "none"; "label": the class labels of the target data; "text": a sequence's tokens and speaker
    guidance_dropout: float = 0.0  # probability of training a pair with the null condition
    # model
    model: str = (
        "auto"  # "auto": unet for images, unet1d for sequences, mlp otherwise; or mlp, unet, unet1d, transformer
    )
    hidden: int = 64
    depth: int = 3
    activation: str = "selu"
    time_embedding: str = "concat"
    unet_width: int = 32  # channels of the UNet's first level
    unet_mults: str = "auto"  # channel multiplier per level, e.g. "1,2,2"; auto: from the image size
    unet_attention: str = "auto"  # resolutions with self-attention, e.g. "16,8"; "none"; auto: 16 px
    unet_blocks: int = 1  # residual blocks per UNet level
    # optimisation
    steps: int = 20_000
    batch_size: int = 512
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 1e-5
    grad_clip: float = 0.0  # 0: off
    ema_decay: float = 0.0  # 0: off; else weights averaged with this decay are used to sample
    ema_warmup: bool = True  # the EMA's decay at step s: min(ema_decay, (1 + s) / (10 + s))
    seed: int = 0
    device: str = "auto"
    # threads that solve the couplings of the next steps while a step trains; "auto": 1 when the
    # method pairs its batches (ot-cfm, sb-cfm) and there are 2+ CPUs, else 0 (inline)
    coupling_workers: int | str = "auto"
    # torchrun: "local" pairs each rank's batch, "global" one OT problem over all ranks' batches
    coupling_scope: str = "local"
    # GPU speed options (CUDA only; ignored with a warning on other devices): flowmatch.training.speed
    bf16: bool = False
    compile: bool = False
    tf32: bool = False
    log_every: int = 50
    log: str = "csv"  # "csv": log.csv; "tensorboard": also TensorBoard events in tensorboard/ (training.tensorboard)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    # steps with a non-finite loss or gradient that may be skipped (not applied) before training stops
    max_bad_steps: int = 0
    # evaluation at the end of training
    eval_solver: str = "auto"  # auto: "average" (its jumps) for meanflow methods, else euler
    eval_steps: int = 100
    eval_guidance: float = 1.0  # guidance scale of the final evaluation and sample grid (cond runs)
    distill: str | None = None  # a trained run: a distill_steps-step student of it (runs/distill.py)
    distill_steps: int = 1
    # token runs (--target digits-tokens / brackets, --method dfm / ot-dfm; runs/discrete.py)
    token_source: str = "mask"  # the source of the mixture path: mask (absorbing) or uniform
    token_loss: str = "ce"  # ce (cross-entropy) or gkl (generalised KL)
    kappa_power: float = 1.0  # kappa_t = t^kappa_power
    corrector: float = 0.0  # weight of the sampler's divergence-free term

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> RunConfig:
        """Check every field; raise ValueError naming the rule and the value."""
        from flowmatch.models.mlp import ACTIVATIONS
        from flowmatch.objectives import methods

        for name in ("source", "target"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"{name} must be a dataset name or file path, got {v!r}")
        spec = methods.spec(self.method)
        if self.sigma is not None:
            self.sigma = check_nonnegative_float("sigma", self.sigma)
            methods.check_sigma(self.method, self.sigma)  # method-specific sigma rules, nothing built
        if self.score is not None and not isinstance(self.score, bool):
            raise ValueError(f"score must be true or false, got {self.score!r}")
        if self.score and not spec.learns_score:
            learners = ", ".join(n for n in methods.names() if methods.spec(n).learns_score)
            raise ValueError(
                f"score = true needs a method that learns a score ({learners}), got method {self.method!r}"
            )
        check_snapshot_settings(self, spec)
        if spec.requires_gaussian_source and self.source != "gaussian":
            raise ValueError(
                f"method {self.method!r} flows from N(0, I) and needs --source gaussian, got {self.source!r}"
            )
        for name in (
            "n_train",
            "n_test",
            "hidden",
            "depth",
            "eval_steps",
            "unet_width",
            "unet_blocks",
            "speech_sentences",
            "speech_speakers",
            "distill_steps",
        ):
            setattr(self, name, check_positive_int(name, getattr(self, name)))
        # the optimisation settings: the Trainer's own rules, in one place (TrainerConfig)
        from flowmatch.training.config import TrainerConfig

        checked = TrainerConfig(**{name: getattr(self, name) for name in TRAINER_FIELDS})
        for name in TRAINER_FIELDS:
            setattr(self, name, getattr(checked, name))
        w = self.coupling_workers
        if isinstance(w, str) and w.strip().isdigit():
            w = int(w.strip())
        if w != "auto":
            try:
                w = check_nonnegative_int("coupling_workers", w)
            except ValueError:
                raise ValueError(
                    f"coupling_workers must be 'auto' or an integer >= 0, got {self.coupling_workers!r}"
                ) from None
        self.coupling_workers = w
        check_choice("coupling_scope", self.coupling_scope, ("local", "global"))
        if self.coupling_scope == "global" and self.cond != "none":
            raise ValueError(
                f"coupling_scope 'global' needs an unconditional run (cond 'none'), got cond {self.cond!r}"
            )
        check_choice("test_split", self.test_split, ("fresh", "paper"))
        check_choice("mmap", self.mmap, ("auto", "on", "off", "pread"))
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("time_embedding", self.time_embedding, ("concat", "sinusoidal"))
        if self.eval_solver == "auto":
            self.eval_solver = "average" if spec.average_velocity else "euler"
        check_choice("eval_solver", self.eval_solver, SOLVER_CHOICES)
        if self.eval_solver == "average" and not spec.average_velocity:
            raise ValueError(f"eval_solver 'average' needs a meanflow method, got method {self.method!r}")
        check_choice("cond", self.cond, COND_CHOICES)
        check_choice("model", self.model, MODEL_CHOICES)
        self.guidance_dropout = check_probability("guidance_dropout", self.guidance_dropout)
        if self.guidance_dropout == 1.0:
            raise ValueError("guidance_dropout must be < 1 (1 never trains the condition), got 1.0")
        if self.guidance_dropout > 0 and self.cond == "none" and not self.infill:
            raise ValueError(
                f"guidance_dropout needs a condition (--cond label), got cond 'none' "
                f"with guidance_dropout {self.guidance_dropout}"
            )
        self.eval_guidance = check_nonnegative_float("eval_guidance", self.eval_guidance)
        check_sequence_settings(self)
        check_token_settings(self, spec)
        from flowmatch.runs.path_options import check_path_options

        check_path_options(self)
        parse_int_list("unet_mults", self.unet_mults)
        parse_int_list("unet_attention", self.unet_attention, allow_empty=True)
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", self.device)
        ):
            if isinstance(self.device, int) and not isinstance(self.device, bool):
                raise ValueError(
                    f"device must be a string: auto, cpu, cuda, cuda:N or mps, got the number "
                    f'{self.device!r} (for CUDA device {self.device} write device = "cuda:{self.device}")'
                )
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        from flowmatch.runs.manifold_rules import check_manifold_settings

        check_manifold_settings(self)
        return self

    @property
    def resolved_sigma(self) -> float:
        """sigma, with the method's default filled in."""
        from flowmatch.objectives import methods

        return methods.spec(self.method).default_sigma if self.sigma is None else self.sigma

    @property
    def resolved_score(self) -> bool:
        """Whether the run learns a score (FlowAndScore model, SDE sampling): ``score``, or the
        method's default (true for sb-cfm)."""
        from flowmatch.objectives import methods

        return methods.spec(self.method).learns_score if self.score is None else self.score

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Build from a dict (e.g. a TOML table); unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> RunConfig:
        data = load_toml(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> RunConfig:
        return _replace(self, **changes)


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
