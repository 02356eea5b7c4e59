"""A pre-norm transformer block over frames: ``h + Attn(N(h))``, then ``h + FF(N(h))``, with the
norms optionally *adaptive* (AdaLN, Peebles & Xie 2023; lucidrains' Voicebox conditions its
norms on the time the same way): ``N(h) = LN(h) * (1 + scale(e)) + shift(e)`` for an embedding e.
Every operation is per frame except the masked attention, so the block is padding-invariant."""

from __future__ import annotations

from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.models.sequence.attention import MaskedSelfAttention

__all__ = ["TransformerBlock"]


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + feed-forward block on ``(B, T, dim)``.

    Args:
        dim: width; heads: attention heads; ff_mult: feed-forward hidden width / dim.
        emb_dim: size of the embedding of the adaptive norms (0: plain LayerNorms).
        rotary: rotary positions in the attention.
        dropout: dropout of the attention and the feed-forward.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 4,
        *,
        ff_mult: int = 4,
        emb_dim: int = 0,
        rotary: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        ff_mult = check_positive_int("ff_mult", ff_mult)
        self.attn = MaskedSelfAttention(dim, heads, rotary=rotary, dropout=dropout)
        adaptive = emb_dim > 0
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=not adaptive)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=not adaptive)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)
        self.modulation: nn.Sequential | None = None
        if adaptive:
            lin = nn.Linear(emb_dim, 4 * dim)
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)
            self.modulation = nn.Sequential(nn.SiLU(), lin)

    def forward(self, h: Tensor, valid: Tensor, emb: Tensor | None = None) -> Tensor:
        """``h`` ``(B, T, dim)``; ``valid`` ``(B, T)`` bool (the keys to attend); ``emb`` ``(B, emb_dim)``."""
        a, f = self.norm1(h), None
        if self.modulation is not None:
            if emb is None:
                raise ValueError("an adaptive TransformerBlock needs its embedding emb, got None")
            s1, b1, s2, b2 = self.modulation(emb)[:, None, :].chunk(4, dim=-1)
            a = a * (1 + s1) + b1
            h = h + self.drop(self.attn(a, valid))
            f = self.norm2(h) * (1 + s2) + b2
        else:
            h = h + self.drop(self.attn(a, valid))
            f = self.norm2(h)
        return h + self.drop(self.ff(f))
