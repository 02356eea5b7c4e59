"""Backbones for padded ``(B, C, T)`` sequences (mel spectrograms), called as
``model(x, t, cond=None, mask=None)`` with a :class:`~flowmatch.data.seqcond.SequenceCondition`:
the Matcha-TTS-style :class:`UNet1D` and the Voicebox-like :class:`SequenceTransformer`, both
padding-invariant (a valid frame's output does not depend on the padding), and the
:class:`SequenceConditionEncoder` that turns a condition into per-frame features."""

from flowmatch.models.sequence.attention import MaskedSelfAttention, RotaryEmbedding
from flowmatch.models.sequence.condition import SequenceConditionEncoder
from flowmatch.models.sequence.frames import ChannelLayerNorm, FrameLinear
from flowmatch.models.sequence.transformer import SequenceTransformer
from flowmatch.models.sequence.transformer_block import TransformerBlock
from flowmatch.models.sequence.unet1d import UNet1D

__all__ = [
    "UNet1D",
    "SequenceTransformer",
    "SequenceConditionEncoder",
    "TransformerBlock",
    "MaskedSelfAttention",
    "RotaryEmbedding",
    "ChannelLayerNorm",
    "FrameLinear",
]
