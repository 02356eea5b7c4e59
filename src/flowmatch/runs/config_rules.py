"""The rules of RunConfig that belong to one kind of run: sequences (speech, .npz folders) and
snapshots (time courses). RunConfig.validate calls them; each raises ValueError naming the rule and
the value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowmatch._utils.validate import check_probability

if TYPE_CHECKING:
    from flowmatch.objectives.methods import MethodSpec

__all__ = ["check_sequence_settings", "check_snapshot_settings"]


def check_sequence_settings(cfg: Any) -> None:
    """Rules of sequence runs (--target speech or a folder of .npz utterances). ``cfg`` is a RunConfig,
    typed Any because runs.config imports this module."""
    from flowmatch.data.sequence_files import is_sequence_spec

    sequences = is_sequence_spec(cfg.target)
    if not isinstance(cfg.infill, bool):
        raise ValueError(f"infill must be true or false, got {cfg.infill!r}")
    cfg.span_min = check_probability("span_min", cfg.span_min)
    cfg.span_max = check_probability("span_max", cfg.span_max)
    if not 0 < cfg.span_min <= cfg.span_max:
        raise ValueError(f"the span must satisfy 0 < span_min <= span_max <= 1, got [{cfg.span_min}, {cfg.span_max}]")
    if cfg.cond == "text" and not sequences:
        raise ValueError(f"cond 'text' needs sequence data (--target speech or a folder of .npz), got {cfg.target!r}")
    if cfg.infill and not sequences:
        raise ValueError(f"infill needs sequence data (--target speech or a folder of .npz), got {cfg.target!r}")
    from flowmatch.objectives import methods

    if not methods.spec(cfg.method).is_flow:
        if not sequences or cfg.cond == "none":
            raise ValueError(
                f"method {cfg.method!r} is a baseline for conditional sequences (--target speech --cond text), "
                f"got target {cfg.target!r} with cond {cfg.cond!r}"
            )
        if cfg.infill:
            raise ValueError(f"method {cfg.method!r} has no flow to infill with; train a flow method with infill")
    if sequences:
        if cfg.method in ("cnf", "sb-cfm"):
            raise ValueError(
                f"sequence runs need a flow matching method whose coupling respects masks (fm, i-cfm, ot-cfm, "
                f"vp-cfm, rf) or regression, got {cfg.method!r}"
            )
        if cfg.cond == "label":
            raise ValueError(
                "sequence runs condition on their tokens and speaker: use --cond text (or none), got 'label'"
            )
        if cfg.model in ("mlp", "unet"):
            raise ValueError(f"sequence runs need a sequence model (auto, unet1d, transformer), got {cfg.model!r}")
        if cfg.source != "gaussian":
            raise ValueError(f"sequence runs flow from noise and need --source gaussian, got {cfg.source!r}")
        if cfg.snapshots is not None:
            raise ValueError("sequence runs take no snapshots")
    elif cfg.model in ("unet1d", "transformer"):
        raise ValueError(f"model {cfg.model!r} needs sequence data (--target speech or a folder of .npz)")


def check_snapshot_settings(cfg: Any, spec: MethodSpec) -> None:
    """Rules of snapshot runs (--snapshots, --holdout; --time-key and --embedding of .h5ad files)."""
    if cfg.snapshots is not None:
        if not isinstance(cfg.snapshots, str) or not cfg.snapshots:
            raise ValueError(
                f"snapshots must be a built-in course name or a .npz/.csv/.h5ad file, got {cfg.snapshots!r}"
            )
        if not spec.simulation_free or spec.requires_gaussian_source:
            raise ValueError(
                f"snapshot runs need a method that flows between data sets (i-cfm, ot-cfm, sb-cfm, "
                f"vp-cfm, rf), got method {cfg.method!r}"
            )
        if cfg.cond != "none":
            raise ValueError(f"snapshot runs take no condition, got cond {cfg.cond!r}")
    h5ad = isinstance(cfg.snapshots, str) and cfg.snapshots.lower().endswith(".h5ad")
    if cfg.time_key is not None and (not isinstance(cfg.time_key, str) or not cfg.time_key):
        raise ValueError(f"time_key must be the name of an obs column of the .h5ad file, got {cfg.time_key!r}")
    from flowmatch.data.anndata_io import parse_embedding

    cfg.embedding = parse_embedding(cfg.embedding)
    for name in ("time_key", "embedding"):
        if getattr(cfg, name) is not None and not h5ad:
            raise ValueError(
                f"{name} applies to .h5ad snapshot files (--snapshots FILE.h5ad), got {name} "
                f"{getattr(cfg, name)!r} with snapshots {cfg.snapshots!r}"
            )
    if cfg.holdout is not None:
        if cfg.snapshots is None:
            raise ValueError(f"holdout needs snapshot data (--snapshots), got holdout {cfg.holdout!r} without it")
        if isinstance(cfg.holdout, bool) or not isinstance(cfg.holdout, int) or cfg.holdout < 1:
            raise ValueError(f"holdout must be the index of an intermediate time point (>= 1), got {cfg.holdout!r}")
