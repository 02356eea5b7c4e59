"""What a run trains, built from its :class:`~flowmatch.runs.config.RunConfig`: the network
(:func:`build_model`), the objective with its coupling (:func:`build_matcher`) and the Trainer's
settings (:func:`trainer_config`). Shared by every kind of run (vector, image, snapshot)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from flowmatch.models import MLP
from flowmatch.models.unet import UNet
from flowmatch.objectives import methods
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.runs.config import TRAINER_FIELDS, RunConfig, parse_int_list
from flowmatch.runs.path_options import apply_path_options
from flowmatch.training.trainer import TrainerConfig

__all__ = [
    "build_unet",
    "unet_settings",
    "build_model",
    "build_matcher",
    "trainer_config",
    "coupling_workers",
    "SCORE_SEED_OFFSET",
]

SCORE_SEED_OFFSET = 7_919  # initial weights of the score network of [SF]2M runs


def build_model(cfg: RunConfig, dim: int, *, shape: tuple[int, ...] | None = None, num_classes: int = 0) -> nn.Module:
    """The velocity network of the config, initialised from ``cfg.seed`` without touching global RNG.

    ``cfg.model``: ``mlp`` (vectors of ``dim``), ``unet`` (images of ``shape`` (C, H, W)) or ``auto``
    (the UNet for images). With ``cfg.cond == "label"`` the network is class-conditional over
    ``num_classes`` classes, with a learned null class for classifier-free guidance.

    A network whose weights cannot be allocated raises a one-line ValueError naming the size
    setting and the memory the weights need.
    """
    try:
        return _build_model(cfg, dim, shape=shape, num_classes=num_classes)
    except RuntimeError as e:  # torch.OutOfMemoryError (CUDA) is a RuntimeError too
        text = str(e)
        if not isinstance(e, torch.OutOfMemoryError) and not any(
            s in text for s in ("can't allocate memory", "out of memory", "not enough memory")
        ):
            raise
        reason = next(
            (
                s
                for s in ("DefaultCPUAllocator: can't allocate memory", "CUDA out of memory", "not enough memory")
                if s in text
            ),
            text.splitlines()[0] if text else "",
        )
        raise ValueError(_too_large(cfg, dim, shape, num_classes, reason)) from None


def _too_large(cfg: RunConfig, dim: int, shape: tuple[int, ...] | None, num_classes: int, reason: str) -> str:
    """The out-of-memory message: the size setting, the parameters and bytes the network needs
    (counted on the meta device, which allocates nothing)."""
    is_image = shape is not None and len(shape) == 3
    unet = (cfg.model == "auto" and is_image) or cfg.model == "unet"
    setting = (
        f"unet_width = {cfg.unet_width} (unet_mults {cfg.unet_mults}, unet_blocks {cfg.unet_blocks})"
        if unet
        else f"hidden = {cfg.hidden} (depth {cfg.depth})"
    )
    try:
        with torch.device("meta"):
            meta = _build_model(cfg, dim, shape=shape, num_classes=num_classes)
        tensors = [*meta.parameters(), *meta.buffers()]
        n = sum(t.numel() for t in meta.parameters())
        size = f"{_bytes_text(sum(t.numel() * t.element_size() for t in tensors))} for its {n:.3g} parameters"
    except Exception:  # noqa: BLE001 - the count is a courtesy; the message stands without it
        size = "more memory"
    kind = "a UNet" if unet else "an MLP"
    return (
        f"the model must fit in memory, but {setting} makes {kind} that needs {size}, which cannot be "
        f"allocated here ({reason}); choose a smaller {'unet_width' if unet else 'hidden'}"
    )


def _bytes_text(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _build_model(cfg: RunConfig, dim: int, *, shape: tuple[int, ...] | None = None, num_classes: int = 0) -> nn.Module:
    if cfg.resolved_score:
        # [SF]2M (sb-cfm): a velocity and a score network of the same architecture in one FlowAndScore;
        # the velocity network is initialised exactly as in a flow-only run, the score network
        # from seed + SCORE_SEED_OFFSET.
        from flowmatch.models import FlowAndScore

        flow_cfg = cfg.replace(score=False)
        flow = _build_model(flow_cfg, dim, shape=shape, num_classes=num_classes)
        score = _build_model(
            flow_cfg.replace(seed=cfg.seed + SCORE_SEED_OFFSET), dim, shape=shape, num_classes=num_classes
        )
        return FlowAndScore(flow, score)
    is_image = shape is not None and len(shape) == 3
    kind = ("unet" if is_image else "mlp") if cfg.model == "auto" else cfg.model
    k = num_classes if cfg.cond == "label" else 0
    if cfg.cond == "label" and k < 1:
        raise ValueError(f"cond 'label' needs the number of classes, got {num_classes!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if kind == "unet":
            if not is_image or shape is None:
                raise ValueError(f"model 'unet' needs image data (N, C, H, W), got samples of shape {shape or (dim,)}")
            return build_unet(cfg, shape, num_classes=k)
        if is_image:
            raise ValueError(f"model 'mlp' needs vector data (N, D), got images of shape {shape}; use --model unet")
        kw: dict[str, Any] = dict(
            hidden=cfg.hidden, depth=cfg.depth, activation=cfg.activation, time_embedding=cfg.time_embedding
        )
        if methods.spec(cfg.method).average_velocity:
            from flowmatch.models.average import AverageVelocityMLP

            return AverageVelocityMLP(dim, num_classes=k, **kw)
        if k:
            from flowmatch.models.cond import ConditionalMLP

            return ConditionalMLP(dim, num_classes=k, **kw)
        return MLP(dim, **kw)


def build_matcher(cfg: RunConfig):
    """The method's objective, with the run's Gaussian-path settings
    (:func:`flowmatch.runs.path_options.apply_path_options`); for conditional runs with condition
    dropout, and a coupling that pairs only within labels (:class:`flowmatch.couplings.WithinLabels`)."""
    fm = methods.get(cfg.method, sigma=cfg.sigma)
    if isinstance(fm, FlowMatcher):
        fm = apply_path_options(fm, cfg)
    if cfg.coupling_scope == "global":  # one OT problem over all ranks (cond runs are rejected by RunConfig)
        if not isinstance(fm, FlowMatcher):
            raise ValueError(f"coupling_scope 'global' needs a flow matching method, got method {cfg.method!r}")
        from flowmatch.couplings.global_coupling import GlobalCoupling

        fm.coupling = GlobalCoupling(fm.coupling, seed=cfg.seed)
    if cfg.cond == "none":
        return fm
    if not isinstance(fm, FlowMatcher):
        raise ValueError(f"method {cfg.method!r} does not take a condition; use a flow matching method")
    from flowmatch.couplings import WithinLabels
    from flowmatch.objectives.cfm import takes_condition

    fm.cond_dropout = cfg.guidance_dropout
    if not fm.coupling.is_identity and not takes_condition(fm.coupling):
        fm.coupling = WithinLabels(fm.coupling)
    return fm


def trainer_config(cfg: RunConfig, quiet: bool) -> TrainerConfig:
    """The Trainer's settings of a run: its TRAINER_FIELDS, ``coupling_workers`` resolved."""
    return TrainerConfig(
        **{name: getattr(cfg, name) for name in TRAINER_FIELDS}, quiet=quiet, coupling_workers=coupling_workers(cfg)
    )


def coupling_workers(cfg: RunConfig) -> int:
    """cfg.coupling_workers with "auto" resolved (flowmatch.training.prefetch.auto_workers)."""
    if cfg.coupling_workers != "auto":
        return int(cfg.coupling_workers)
    from flowmatch.training.prefetch import auto_workers

    return auto_workers(not methods.spec(cfg.method).pairs)  # from the method's spec: nothing built


def unet_settings(cfg: RunConfig, shape: Sequence[int]) -> dict[str, Any]:
    """UNet constructor arguments of a config for images of ``shape`` (C, H, W).

    ``unet_mults="auto"``: (1, 2) up to 16 px, (1, 2, 2) up to 32 px, (1, 2, 2, 2) above.
    ``unet_attention="auto"``: the levels of 16 px (as in the CIFAR-10 UNet of Ho et al. 2020); the
    middle block, at the lowest resolution, always has self-attention.
    """
    c, h, w = (int(s) for s in shape)
    size = max(h, w)
    mults = parse_int_list("unet_mults", cfg.unet_mults)
    if mults is None:
        mults = (1, 2) if size <= 16 else (1, 2, 2) if size <= 32 else (1, 2, 2, 2)
    pad = 2 ** (len(mults) - 1)
    padded = -(-size // pad) * pad
    attn = parse_int_list("unet_attention", cfg.unet_attention, allow_empty=True)
    if attn is None:
        attn = tuple(padded // 2**i for i in range(len(mults)) if padded // 2**i == 16)
    return dict(
        in_channels=c,
        base_channels=cfg.unet_width,
        channel_mults=mults,
        num_res_blocks=cfg.unet_blocks,
        attention_resolutions=attn,
        image_size=size,
    )


def build_unet(cfg: RunConfig, shape: Sequence[int], num_classes: int = 0) -> UNet:
    """The UNet of ``cfg`` for images of ``shape``, class-conditional when ``num_classes > 0``; an
    average-velocity UNet u(x, t, h) for the few-step methods (meanflow, shortcut)."""
    interval = methods.spec(cfg.method).average_velocity
    return UNet(num_classes=num_classes, interval=interval, **unet_settings(cfg, shape))
