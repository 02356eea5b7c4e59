"""Classifier-free guidance for flow matching (Ho & Salimans 2022; Zheng et al. 2023, "Guided flows
for generative modeling and decision making").

A model trained with condition dropout (:func:`flowmatch.data.conditioning.drop_condition`) is both a
conditional field v(x, t | c) and, given the null condition, the unconditional field v(x, t | null).
Guidance with scale w integrates the field

    v_w(x, t | c) = v(x, t | null) + w (v(x, t | c) - v(x, t | null)).

Convention: **w = 0 is the unconditional field, w = 1 the plain conditional field**, and w > 1
extrapolates away from the unconditional field (sharper, more class-typical samples, less
diversity). Some papers write the same field as ``(1 + w') v_cond - w' v_null``; their w' is our
w - 1 (so their w' = 1 is our w = 2).

:class:`GuidedModel` is an ``nn.Module`` with the velocity-model interface
``model(x, t, cond=None)``, so it works with every solver of :func:`flowmatch.sample`. Both fields
are evaluated in one batched call of the wrapped network (2B rows); this is exact for networks
without batch interactions (GroupNorm, LayerNorm, no BatchNorm in training mode).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowmatch.data.conditioning import Condition, cat_conditions, check_cond, null_like

__all__ = ["GuidedModel", "guided"]


class GuidedModel(nn.Module):
    """``v_w(x, t | c) = v(x, t | null) + w (v(x, t | c) - v(x, t | null))`` (classifier-free guidance).

    Args:
        model: a conditional velocity network trained with condition dropout.
        scale: the guidance scale w (finite; 0 unconditional, 1 conditional; see the module doc).

    Called as ``guided(x, t, cond)`` (``guided(x, t, cond, h=h)`` for an average-velocity network
    u(x, t, h), guided as u_null + w (u_cond - u_null)); ``cond=None`` gives the unconditional
    field ``v(x, t | null)`` whatever the scale. For w = 1 the wrapped model is called once with ``cond`` and for w = 0 once
    with the null condition (the formula's value, without the second evaluation).

    Example:
        >>> import torch
        >>> from flowmatch.models.cond import ConditionalMLP
        >>> net = ConditionalMLP(2, num_classes=3)
        >>> x, t, c = torch.randn(4, 2), torch.rand(4), torch.tensor([0, 1, 2, 0])
        >>> torch.allclose(guided(net, 1.0)(x, t, c), net(x, t, c))
        True
    """

    def __init__(self, model: nn.Module, scale: float):
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be callable as model(x, t, cond=None), got {type(model).__name__}")
        try:
            w = float(scale)
        except (TypeError, ValueError):
            raise ValueError(f"guidance scale must be a finite number, got {scale!r}") from None
        if not math.isfinite(w):
            raise ValueError(f"guidance scale must be a finite number, got {scale!r}")
        self.model = model
        self.scale = w

    def forward(
        self, x: Tensor, t: Tensor, cond: Condition | None = None, mask: Tensor | None = None, h: Tensor | None = None
    ) -> Tensor:
        extra: dict[str, Tensor] = {} if mask is None else {"mask": mask}
        if h is not None:  # an average-velocity network (MeanFlow, shortcut): guide u(x, t, h) the same way
            extra["h"] = h
        if cond is None:
            return self.model(x, t, cond=None, **extra)
        cond = check_cond(cond, x.shape[0])
        if self.scale == 1.0:
            return self.model(x, t, cond=cond, **extra)
        if self.scale == 0.0:
            return self.model(x, t, cond=null_like(cond), **extra)
        b = x.shape[0]
        t = t.expand(b) if t.dim() == 0 else t
        if mask is not None:
            extra["mask"] = torch.cat([mask, mask])
        if h is not None:
            h = h.expand(b) if h.dim() == 0 else h
            extra["h"] = torch.cat([h, h])
        both = cat_conditions([cond, null_like(cond)])
        v = self.model(torch.cat([x, x]), torch.cat([t, t]), cond=both, **extra)
        v_cond, v_null = v[:b], v[b:]
        return v_null + self.scale * (v_cond - v_null)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def guided(model: nn.Module, scale: float) -> GuidedModel:
    """Wrap ``model`` for classifier-free guidance with scale ``scale`` (see :class:`GuidedModel`)."""
    return GuidedModel(model, scale)
