"""Velocity networks called as ``model(x, t, cond=None)``, and the wrappers that make one of a
network trained on another target (:class:`AsVelocity`) or another schedule
(:class:`ScheduleTransformedModel`)."""

from flowmatch.models.average import AverageVelocityMLP, call_average
from flowmatch.models.cond import CondEmbedding, ConditionalMLP
from flowmatch.models.embeddings import SinusoidalTimeEmbedding, make_time_embedding
from flowmatch.models.flow_and_score import FlowAndScore, has_score
from flowmatch.models.mlp import ACTIVATIONS, MLP
from flowmatch.models.parametrization import AsVelocity, as_velocity
from flowmatch.models.schedule_change import ScheduleTransformedModel
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
    "AsVelocity",
    "as_velocity",
    "ScheduleTransformedModel",
    "AverageVelocityMLP",
    "call_average",
]
