"""flowmatch: conditional flow matching (I-CFM, OT-CFM, FM, SB-CFM, VP-CFM, rectified flow).

Train a velocity field v_theta(x, t) that transports a source q0 to a target q1 by regressing the
conditional velocity of a probability path (Lipman et al. ICLR 2023; Tong et al. TMLR 2024), then
integrate it to sample.

>>> import flowmatch
>>> fm = flowmatch.methods.get("ot-cfm")   # FlowMatcher: path + coupling + time sampler
>>> model = flowmatch.MLP(dim=2)            # model(x, t, cond=None) -> velocity
"""

from flowmatch import couplings, methods, paths
from flowmatch.couplings import ExactOT, Independent, Sinkhorn
from flowmatch.matcher import FlowMatcher, PathSample
from flowmatch.models import MLP
from flowmatch.solvers import SampleResult, ode_solvers, sample

__version__ = "0.1.0"

__all__ = [
    "FlowMatcher",
    "PathSample",
    "MLP",
    "ExactOT",
    "Independent",
    "Sinkhorn",
    "SampleResult",
    "sample",
    "ode_solvers",
    "methods",
    "paths",
    "couplings",
    "__version__",
]
