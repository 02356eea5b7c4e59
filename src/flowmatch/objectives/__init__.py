"""Training objectives: what a model regresses, given a pair batch (x0, x1).

- :mod:`~flowmatch.objectives.cfm`: :class:`FlowMatcher`, coupling + path + time sampler and the
  conditional flow matching loss E ||v(t, x_t) - u_t||^2;
- :mod:`~flowmatch.objectives.sf2m`: :class:`ScoreFlowMatcher`, CFM plus the score loss ([SF]2M);
- :mod:`~flowmatch.objectives.cnf`: :class:`CNFObjective`, the maximum-likelihood CNF baseline;
- :mod:`~flowmatch.objectives.methods`: the named methods with their papers' defaults
  (``flowmatch.objectives.methods.get("ot-cfm")``).
"""

from flowmatch.objectives import methods
from flowmatch.objectives.cfm import FlowMatcher, PairingOverride, PathSample, UniformTime
from flowmatch.objectives.cnf import CNFObjective
from flowmatch.objectives.sf2m import ScoreFlowMatcher, SF2MLoss

__all__ = [
    "FlowMatcher",
    "PathSample",
    "UniformTime",
    "PairingOverride",
    "ScoreFlowMatcher",
    "SF2MLoss",
    "CNFObjective",
    "methods",
]
