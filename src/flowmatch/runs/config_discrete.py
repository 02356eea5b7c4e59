"""The rules of RunConfig for token runs (``--target digits-tokens`` or ``brackets`` with
``--method dfm`` or ``ot-dfm``, :mod:`flowmatch.runs.discrete`); each raises ValueError naming the
rule and the value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowmatch._utils.validate import check_choice, check_nonnegative_float, check_positive_float

if TYPE_CHECKING:
    from flowmatch.objectives.methods import MethodSpec

__all__ = ["check_token_settings"]


def check_token_settings(cfg: Any, spec: MethodSpec) -> None:
    """Token data and discrete methods go together; the mixture path's settings. ``cfg`` is a
    RunConfig (typed Any because runs.config imports this module)."""
    from flowmatch.data.tokens import TOKEN_DATASETS, is_token_spec
    from flowmatch.objectives.discrete import DISCRETE_LOSSES
    from flowmatch.paths.mixture import TOKEN_SOURCES

    check_choice("token_source", cfg.token_source, TOKEN_SOURCES)
    check_choice("token_loss", cfg.token_loss, DISCRETE_LOSSES)
    cfg.kappa_power = check_positive_float("kappa_power", cfg.kappa_power)
    cfg.corrector = check_nonnegative_float("corrector", cfg.corrector)
    tokens = is_token_spec(cfg.target)
    if spec.discrete and not tokens:
        raise ValueError(
            f"method {cfg.method!r} trains on tokens: it needs --target {' or '.join(TOKEN_DATASETS)}, "
            f"got {cfg.target!r}"
        )
    if not tokens:
        return
    if not spec.discrete:
        raise ValueError(f"token data {cfg.target!r} needs a discrete method (dfm, ot-dfm), got {cfg.method!r}")
    if cfg.source != "gaussian":
        raise ValueError(
            f"token runs take their source from --token-source (mask or uniform), got --source {cfg.source!r}"
        )
    if cfg.cond == "label" and cfg.target != "digits-tokens":
        raise ValueError(f"cond 'label' needs labelled token data (digits-tokens), got {cfg.target!r}")
    if cfg.model != "auto":
        raise ValueError(f"token runs use their token transformer: --model auto, got {cfg.model!r}")
    if cfg.snapshots is not None or cfg.distill is not None:
        raise ValueError("token runs take no snapshots and no distillation")
