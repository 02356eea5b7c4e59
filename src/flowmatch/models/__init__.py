"""Velocity networks called as ``model(x, t, cond=None)``."""

from flowmatch.models.embeddings import SinusoidalTimeEmbedding, make_time_embedding
from flowmatch.models.mlp import ACTIVATIONS, MLP

__all__ = ["MLP", "ACTIVATIONS", "SinusoidalTimeEmbedding", "make_time_embedding"]
