"""SequenceTransformer: a Voicebox-like transformer ``v_theta(x, t, c)`` for padded ``(B, C, T)``
sequences.

Follows Voicebox (Le et al., NeurIPS 2023) as lucidrains' voicebox-pytorch implements it:

- input: ``concat(x, encoded condition)`` per frame (Voicebox concatenates the noisy frames, the
  masked known frames ``x1 * (1 - span)`` and the aligned phone embeddings), projected linearly
  to the model width;
- time: sinusoidal features -> MLP -> adaptive LayerNorm (scale and shift from t) in every block,
  the choice of voicebox-pytorch over the paper's time token (which relative positions would
  mis-treat);
- rotary positions (RoPE) in the attention, with a key-padding mask;
- U-Net style skips (Voicebox): the output of layer i of the first half is concatenated to the
  input of layer ``depth - 1 - i`` of the second half and mapped back by a linear layer;
- a final adaptive LayerNorm and a linear projection to C channels, multiplied by the mask.

Every operation is per frame except the masked attention, so the valid frames' outputs do not
depend on the padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.data.seqcond import SequenceCondition
from flowmatch.models.embeddings import SinusoidalTimeEmbedding
from flowmatch.models.sequence.condition import SequenceConditionEncoder
from flowmatch.models.sequence.inputs import check_sequence_call, check_time_dim_and_dropout
from flowmatch.models.sequence.transformer_block import TransformerBlock

__all__ = ["SequenceTransformer"]


class SequenceTransformer(nn.Module):
    """Voicebox-like transformer velocity field, called as ``model(x, t, cond=None, mask=None)``.

    Args:
        in_channels: channels C of the sequences (80 for log-mels); the output has C channels.
        dim: model width (a multiple of ``heads``, with an even head dimension for RoPE).
        depth: transformer blocks; the first ``depth // 2`` feed skips to the last ``depth // 2``.
        heads: attention heads.
        ff_mult: feed-forward hidden width / dim.
        time_dim: sinusoidal features of t (even); the time embedding has ``dim`` entries.
        dropout: dropout in the blocks.
        num_tokens: token vocabulary of the condition (0: no tokens).
        num_speakers: speakers of the condition (0: none).
        feature_dim: frame-aligned condition features F (0: none).
        context_channels: channels of an infilling context (0: none).
        cond_dim: embedding size of the condition; all five as in
            :class:`~flowmatch.models.sequence.condition.SequenceConditionEncoder`.

    Example:
        >>> import torch
        >>> net = SequenceTransformer(8, dim=32, depth=2, context_channels=8)
        >>> x, mask = torch.zeros(2, 8, 11), torch.ones(2, 1, 11)
        >>> net(x, torch.rand(2), None, mask).shape
        torch.Size([2, 8, 11])
    """

    def __init__(
        self,
        in_channels: int = 80,
        *,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        ff_mult: int = 4,
        time_dim: int = 64,
        dropout: float = 0.0,
        num_tokens: int = 0,
        num_speakers: int = 0,
        feature_dim: int = 0,
        context_channels: int = 0,
        cond_dim: int = 64,
    ):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        dim = check_positive_int("dim", dim)
        depth = check_positive_int("depth", depth)
        heads = check_positive_int("heads", heads)
        if dim % heads or (dim // heads) % 2:
            raise ValueError(
                f"dim must be a multiple of heads ({heads}) with an even head dimension (RoPE), got dim={dim}"
            )
        time_dim = check_time_dim_and_dropout(time_dim, dropout)
        self.cond_encoder = SequenceConditionEncoder(
            num_tokens, num_speakers, feature_dim, context_channels, dim=cond_dim
        )
        self.config = dict(
            in_channels=in_channels,
            dim=dim,
            depth=depth,
            heads=heads,
            ff_mult=ff_mult,
            time_dim=time_dim,
            dropout=float(dropout),
            num_tokens=num_tokens,
            num_speakers=num_speakers,
            feature_dim=feature_dim,
            context_channels=context_channels,
            cond_dim=cond_dim,
        )
        self.time_features = SinusoidalTimeEmbedding(time_dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.proj_in = nn.Linear(in_channels + self.cond_encoder.out_dim, dim)
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(dim, heads, ff_mult=ff_mult, emb_dim=dim, rotary=True, dropout=dropout)
                for _ in range(depth)
            ]
        )
        self.skip_proj = nn.ModuleList([nn.Linear(2 * dim, dim) for _ in range(depth // 2)])
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.proj_out = nn.Linear(dim, in_channels)

    def forward(
        self, x: Tensor, t: Tensor, cond: SequenceCondition | None = None, mask: Tensor | None = None
    ) -> Tensor:
        t, mask = check_sequence_call("SequenceTransformer", self.in_channels, x, t, mask)
        emb = self.time_mlp(self.time_features(t))
        h = self.proj_in((torch.cat([x, self.cond_encoder(cond, x, mask)], dim=1) * mask).transpose(1, 2))
        valid = mask[:, 0] > 0
        depth, half = len(self.blocks), len(self.skip_proj)
        skips: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i >= depth - half:
                h = self.skip_proj[i - (depth - half)](torch.cat([h, skips.pop()], dim=-1))
            h = block(h, valid, emb)
            if i < half:
                skips.append(h)
        scale, shift = self.modulation_out(emb)[:, None, :].chunk(2, dim=-1)
        out = self.proj_out(self.norm_out(h) * (1 + scale) + shift)
        return out.transpose(1, 2) * mask
