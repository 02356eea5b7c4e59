"""The RunConfig rules of manifold runs (``--manifold sphere|torus``, :mod:`flowmatch.runs.manifold`).
RunConfig.validate calls :func:`check_manifold_settings`; each rule raises a one-line ValueError
naming the rule and the value."""

from __future__ import annotations

from typing import Any

from flowmatch._utils.validate import check_choice

__all__ = ["MANIFOLD_CHOICES", "check_manifold_settings"]

#: ``--manifold``: none (Euclidean runs) or a built-in manifold.
MANIFOLD_CHOICES = ("none", "sphere", "torus")
#: the projected solvers a manifold run evaluates with
MANIFOLD_EVAL_SOLVERS = ("euler", "midpoint", "rk4")


def check_manifold_settings(cfg: Any) -> None:
    """Rules of ``cfg.manifold`` (``cfg`` a RunConfig, typed Any because runs.config imports this
    module). On a manifold the source is the uniform law: ``source`` must be ``uniform``, and the
    RunConfig default ``gaussian`` is replaced by it (written so into config.toml)."""
    check_choice("manifold", cfg.manifold, MANIFOLD_CHOICES)
    if cfg.manifold == "none":
        if cfg.source == "uniform":
            raise ValueError("source 'uniform' is the uniform law of a manifold and needs --manifold sphere or torus")
        return
    from flowmatch.data.manifold_toys import MANIFOLD_TARGETS
    from flowmatch.objectives.riemannian import RIEMANNIAN_METHODS

    on_it = [n for n, (m, _) in MANIFOLD_TARGETS.items() if m == cfg.manifold]
    if cfg.target not in on_it:
        raise ValueError(f"target on the {cfg.manifold} must be one of {', '.join(on_it)}, got {cfg.target!r}")
    if cfg.source == "gaussian":
        cfg.source = "uniform"
    if cfg.source != "uniform":
        raise ValueError(f"source on a manifold must be 'uniform' (its normalised volume), got {cfg.source!r}")
    if cfg.method not in RIEMANNIAN_METHODS:
        raise ValueError(f"method on a manifold must be one of {', '.join(RIEMANNIAN_METHODS)}, got {cfg.method!r}")
    if cfg.sigma not in (None, 0.0):
        raise ValueError(f"sigma on a manifold must be 0 (geodesic paths have no noise), got {cfg.sigma}")
    unsupported = {
        "snapshots": (cfg.snapshots, None),
        "distill": (cfg.distill, None),
        "cond": (cfg.cond, "none"),
        "score": (bool(cfg.score), False),
        "scheduler": (cfg.scheduler, "auto"),
        "target_param": (cfg.target_param, "velocity"),
        "time_sampler": (cfg.time_sampler, "uniform"),
        "coupling_scope": (cfg.coupling_scope, "local"),
    }
    for name, (value, default) in unsupported.items():
        if value != default:
            raise ValueError(f"{name} on a manifold must be {default!r} (not supported there), got {value!r}")
    if cfg.model not in ("auto", "mlp"):
        raise ValueError(f"model on a manifold must be auto or mlp (a tangent-projected MLP), got {cfg.model!r}")
    if cfg.eval_solver not in MANIFOLD_EVAL_SOLVERS:
        raise ValueError(
            f"eval_solver on a manifold must be one of {', '.join(MANIFOLD_EVAL_SOLVERS)} (projected solvers), "
            f"got {cfg.eval_solver!r}"
        )
