"""Training objectives: what a model regresses, given a pair batch (x0, x1).

- :mod:`~flowmatch.objectives.cfm`: :class:`FlowMatcher`, coupling + path + time sampler and the
  conditional flow matching loss E ||v(t, x_t) - u_t||^2;
- :mod:`~flowmatch.objectives.time_samplers`: the laws t is drawn from (:class:`UniformTime`,
  :class:`LogitNormalTime`, :class:`ShiftedTime`, :class:`ModeTime`, :class:`CallableTime`) and
  :func:`parse_time_sampler` for the command line;
- :mod:`~flowmatch.objectives.targets`: what the network predicts (velocity, x1, eps, score) and
  the loss weightings;
- :mod:`~flowmatch.objectives.meanflow`: :class:`MeanFlowMatcher`, the average velocity for
  one-step generation (MeanFlow); :mod:`~flowmatch.objectives.shortcut`: :class:`ShortcutMatcher`;
  :mod:`~flowmatch.objectives.consistency`: :class:`ConsistencyMatcher`, consistency flow matching;
- :mod:`~flowmatch.objectives.sf2m`: :class:`ScoreFlowMatcher`, CFM plus the score loss ([SF]2M);
- :mod:`~flowmatch.objectives.cnf`: :class:`CNFObjective`, the maximum-likelihood CNF baseline;
- :mod:`~flowmatch.objectives.methods`: the named methods with their papers' defaults
  (``flowmatch.objectives.methods.get("ot-cfm")``).
"""

from flowmatch.objectives import methods
from flowmatch.objectives.cfm import FlowMatcher, PairingOverride, PathSample
from flowmatch.objectives.cnf import CNFObjective
from flowmatch.objectives.consistency import ConsistencyMatcher
from flowmatch.objectives.meanflow import MeanFlowMatcher
from flowmatch.objectives.sf2m import ScoreFlowMatcher, SF2MLoss
from flowmatch.objectives.shortcut import ShortcutMatcher
from flowmatch.objectives.targets import TARGET_PARAMS, WEIGHTINGS
from flowmatch.objectives.time_samplers import (
    CallableTime,
    LogitNormalTime,
    ModeTime,
    ShiftedTime,
    TimeSampler,
    UniformTime,
    parse_time_sampler,
    resolution_shift,
    time_sampler_names,
)

__all__ = [
    "FlowMatcher",
    "PathSample",
    "TimeSampler",
    "UniformTime",
    "LogitNormalTime",
    "ShiftedTime",
    "ModeTime",
    "CallableTime",
    "resolution_shift",
    "parse_time_sampler",
    "time_sampler_names",
    "PairingOverride",
    "TARGET_PARAMS",
    "WEIGHTINGS",
    "ScoreFlowMatcher",
    "MeanFlowMatcher",
    "ShortcutMatcher",
    "ConsistencyMatcher",
    "SF2MLoss",
    "CNFObjective",
    "methods",
]
