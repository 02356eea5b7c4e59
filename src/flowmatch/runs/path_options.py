"""A run's Gaussian-path settings: the scheduler of its path, what its network predicts, the loss
weighting and the law of t (``--scheduler``, ``--target-param``, ``--loss-weighting``,
``--time-sampler``).

With ``scheduler = "auto"`` a run keeps its method's path; any other scheduler
(:func:`flowmatch.paths.parse_scheduler`) replaces it by ``AffinePath(scheduler, sigma)``,
x_t = alpha_t x1 + sigma_t x0 plus ``--sigma`` of extra noise (default 0), and the method
contributes its coupling. A network trained on x1, eps or the score is sampled, evaluated and
plotted through :class:`flowmatch.models.AsVelocity`, so every sampler sees a velocity field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from flowmatch._utils.validate import check_choice

#: A :class:`flowmatch.runs.config.RunConfig` (which calls :func:`check_path_options` while it validates,
#: so this module does not import it).
RunConfig = Any

if TYPE_CHECKING:
    from flowmatch.objectives.cfm import FlowMatcher
    from flowmatch.paths import AffinePath, ProbabilityPath

__all__ = [
    "SCHEDULER_METHODS",
    "check_path_options",
    "run_path",
    "apply_path_options",
    "velocity_model",
    "run_scheduler",
]

#: The methods whose path a --scheduler may replace (their couplings do not depend on the path).
SCHEDULER_METHODS = ("i-cfm", "ot-cfm", "fm", "vp-cfm", "rf")


def _is_default(cfg: RunConfig) -> bool:
    return cfg.scheduler == "auto" and cfg.target_param == "velocity" and cfg.time_sampler == "uniform"


def check_path_options(cfg: RunConfig) -> None:
    """The rules of the four settings, as one-line ValueErrors naming the rule and the value.

    Nothing is built but the path itself (cheap): the rules of the target parametrisation are those
    of :func:`flowmatch.objectives.targets.check_target_param` on the run's path.
    """
    from flowmatch.objectives import methods
    from flowmatch.objectives.targets import TARGET_PARAMS, WEIGHTINGS, check_target_param
    from flowmatch.objectives.time_samplers import parse_time_sampler
    from flowmatch.paths import parse_scheduler

    for name in ("scheduler", "target_param", "loss_weighting", "time_sampler"):
        if not isinstance(getattr(cfg, name), str):
            raise ValueError(f"{name} must be a string, got {getattr(cfg, name)!r}")
    check_choice("target_param", cfg.target_param, TARGET_PARAMS)
    check_choice("loss_weighting", cfg.loss_weighting, WEIGHTINGS)
    parse_time_sampler(cfg.time_sampler)
    if cfg.scheduler != "auto":
        parse_scheduler(cfg.scheduler)
    _check_average_velocity(cfg)
    if _is_default(cfg):
        return
    if cfg.snapshots is not None or _is_sequence_run(cfg):
        raise ValueError(
            "scheduler, target_param and time_sampler apply to vector and image runs, got "
            f"scheduler {cfg.scheduler!r}, target_param {cfg.target_param!r}, time_sampler {cfg.time_sampler!r} "
            f"for {'snapshots' if cfg.snapshots is not None else 'sequence target'} "
            f"{cfg.snapshots or cfg.target!r}"
        )
    spec = methods.spec(cfg.method)
    if not spec.simulation_free or not spec.is_flow:
        raise ValueError(f"method {cfg.method!r} has no flow matching path to set; use a flow matching method")
    if cfg.scheduler != "auto" and cfg.method not in SCHEDULER_METHODS:
        raise ValueError(
            f"scheduler needs a method whose path it can replace ({', '.join(SCHEDULER_METHODS)}), "
            f"got method {cfg.method!r}"
        )
    if cfg.target_param != "velocity":
        if spec.velocity_only:
            what = "an average velocity" if spec.average_velocity else "a velocity by its own objective"
            raise ValueError(f"method {cfg.method!r} learns {what}; target_param must be velocity")
        if cfg.source != "gaussian":
            raise ValueError(
                f"target_param {cfg.target_param!r} needs --source gaussian (x1, eps and score are defined "
                f"on paths from N(0, I)), got source {cfg.source!r}"
            )
        check_target_param(cfg.target_param, run_path(cfg), cfg.loss_weighting)


def _check_average_velocity(cfg: RunConfig) -> None:
    """Average-velocity methods (meanflow, shortcut): vector runs (an AverageVelocityMLP) and image
    runs (a UNet with the interval input), unconditional or class-conditional."""
    from flowmatch.data.images import is_image_spec
    from flowmatch.objectives import methods

    if not methods.spec(cfg.method).average_velocity:
        return
    if cfg.snapshots is not None or _is_sequence_run(cfg):
        what = f"snapshots {cfg.snapshots!r}" if cfg.snapshots is not None else f"target {cfg.target!r}"
        raise ValueError(f"method {cfg.method!r} trains on vector data (N, D) or images, got {what}")
    if cfg.cond not in ("none", "label"):
        raise ValueError(f"method {cfg.method!r} takes cond 'none' or 'label', got cond {cfg.cond!r}")
    image = is_image_spec(cfg.target)
    allowed = ("auto", "unet") if image else ("auto", "mlp")
    if cfg.model not in allowed:
        net = "a UNet with the interval input" if image else "an AverageVelocityMLP"
        raise ValueError(
            f"method {cfg.method!r} builds {net} for target {cfg.target!r} (model {' or '.join(allowed)}), "
            f"got {cfg.model!r}"
        )


def _is_sequence_run(cfg: RunConfig) -> bool:
    from flowmatch.data.sequence_files import is_sequence_spec

    return is_sequence_spec(cfg.target)


def run_path(cfg: RunConfig) -> ProbabilityPath:
    """The path a run trains on: its method's, or ``AffinePath(scheduler, sigma)``."""
    from flowmatch.objectives import methods
    from flowmatch.paths import AffinePath, parse_scheduler

    if cfg.scheduler == "auto":
        return methods.get_flow_matcher(cfg.method, sigma=cfg.sigma).path
    return AffinePath(parse_scheduler(cfg.scheduler), 0.0 if cfg.sigma is None else cfg.sigma)


def apply_path_options(fm: FlowMatcher, cfg: RunConfig) -> FlowMatcher:
    """``fm`` (any FlowMatcher, [SF]2M's included) set to the run's path, target parametrisation,
    weighting and time sampler."""
    if _is_default(cfg):
        return fm
    from flowmatch.objectives.targets import check_target_param
    from flowmatch.objectives.time_samplers import parse_time_sampler

    fm.path = run_path(cfg)
    fm.time_sampler = parse_time_sampler(cfg.time_sampler)
    fm.target_param, fm.loss_weighting = check_target_param(cfg.target_param, fm.path, cfg.loss_weighting)
    return fm


def velocity_model(cfg: RunConfig, model: nn.Module) -> nn.Module:
    """The velocity field of a run's network: the network itself, or AsVelocity around it."""
    if cfg.target_param == "velocity":
        return model
    from flowmatch.models import as_velocity

    path: AffinePath = run_path(cfg)  # type: ignore[assignment]  # checked affine by check_path_options
    return as_velocity(model, path.scheduler, cfg.target_param)


def run_scheduler(cfg: RunConfig):
    """The scheduler of a run whose path is an affine Gaussian path, else None."""
    from flowmatch.paths import AffinePath

    path = run_path(cfg)
    return path.scheduler if isinstance(path, AffinePath) and path.is_gaussian else None
