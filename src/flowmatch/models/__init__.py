"""Velocity networks called as ``model(x, t, cond=None)``."""

from flowmatch.models.cond import CondEmbedding, ConditionalMLP
from flowmatch.models.embeddings import SinusoidalTimeEmbedding, make_time_embedding
from flowmatch.models.flow_and_score import FlowAndScore, has_score
from flowmatch.models.mlp import ACTIVATIONS, MLP
from flowmatch.models.sequence import SequenceConditionEncoder, SequenceTransformer, UNet1D
from flowmatch.models.unet import UNet

__all__ = [
    "MLP",
    "ACTIVATIONS",
    "SinusoidalTimeEmbedding",
    "make_time_embedding",
    "FlowAndScore",
    "has_score",
    "CondEmbedding",
    "ConditionalMLP",
    "UNet",
    "UNet1D",
    "SequenceTransformer",
    "SequenceConditionEncoder",
]
