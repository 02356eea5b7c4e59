"""flowmatch: conditional flow matching (I-CFM, OT-CFM, FM, SB-CFM, VP-CFM, rectified flow).

Train a velocity field v_theta(x, t) that transports a source q0 to a target q1 by regressing the
conditional velocity of a probability path (Lipman et al. ICLR 2023; Tong et al. TMLR 2024), then
integrate it to sample.

>>> import flowmatch
>>> fm = flowmatch.methods.get("ot-cfm")   # FlowMatcher: path + coupling + time sampler
>>> model = flowmatch.MLP(dim=2)            # model(x, t, cond=None) -> velocity
"""

import importlib
from typing import Any

from flowmatch import _compat
from flowmatch._utils.version import VERSION

# Public names and the module that defines each. They are imported on first use (PEP 562), so
# that `import flowmatch.cli` (and `flowmatch --help`) does not pay for importing torch and POT.
_LAZY = {
    "FlowMatcher": "flowmatch.objectives.cfm",
    "PathSample": "flowmatch.objectives.cfm",
    "MLP": "flowmatch.models",
    "ExactOT": "flowmatch.couplings",
    "Independent": "flowmatch.couplings",
    "Sinkhorn": "flowmatch.couplings",
    "SampleResult": "flowmatch.sampling.ode",
    "sample": "flowmatch.sampling.ode",
    "ode_solvers": "flowmatch.sampling.ode",
    "sample_sde": "flowmatch.sampling.sde",
    "sample_diffusion": "flowmatch.sampling.diffusion",
    "sample_average": "flowmatch.sampling.average",
    "MeanFlowMatcher": "flowmatch.objectives.meanflow",
    "AverageVelocityMLP": "flowmatch.models.average",
    "FlowAndScore": "flowmatch.models",
    "AffinePath": "flowmatch.paths",
    "AsVelocity": "flowmatch.models",
    "ScheduleTransformedModel": "flowmatch.models",
    "log_likelihood": "flowmatch.sampling.likelihood",
    "encode": "flowmatch.sampling.encode",
    "decode": "flowmatch.sampling.encode",
    "LikelihoodResult": "flowmatch.sampling.likelihood",
    "ConditionalMLP": "flowmatch.models",
    "UNet": "flowmatch.models",
    "GuidedModel": "flowmatch.models.guidance",
    "guided": "flowmatch.models.guidance",
    "Trainer": "flowmatch.training",
    "TrainerConfig": "flowmatch.training",
    "ScoreFlowMatcher": "flowmatch.objectives",
    "CNFObjective": "flowmatch.objectives",
    "UNet1D": "flowmatch.models.sequence",
    "SequenceTransformer": "flowmatch.models.sequence",
    "SequenceCondition": "flowmatch.data.seqcond",
    "SequenceSet": "flowmatch.data.sequences",
    "InfillingMatcher": "flowmatch.objectives.infill",
    "infill": "flowmatch.sampling.infill",
    "RunConfig": "flowmatch.runs",
    "train_run": "flowmatch.runs",
    "load_run": "flowmatch.runs",
}
#: Subpackages (one per concept, in the order data flows) and the public modules reachable as
#: attributes of ``flowmatch``; ``flowmatch.methods`` is the method registry.
_SUBMODULES = {
    "manifolds": "flowmatch.manifolds",
    "data": "flowmatch.data",
    "ot": "flowmatch.ot",
    "couplings": "flowmatch.couplings",
    "paths": "flowmatch.paths",
    "sampling": "flowmatch.sampling",
    "models": "flowmatch.models",
    "objectives": "flowmatch.objectives",
    "training": "flowmatch.training",
    "metrics": "flowmatch.metrics",
    "trajectory": "flowmatch.trajectory",
    "plots": "flowmatch.plots",
    "runs": "flowmatch.runs",
    "bench": "flowmatch.bench",
    "cli": "flowmatch.cli",
    "methods": "flowmatch.objectives.methods",
    "gaussian_bridge": "flowmatch.trajectory.gaussian_bridge",
}

_compat.install()  # the flat layout's module paths, deprecated


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'flowmatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = VERSION  # the one source: flowmatch._utils.version (also pyproject's and --version's)

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
    "sample_sde",
    "sample_diffusion",
    "sample_average",
    "MeanFlowMatcher",
    "AverageVelocityMLP",
    "FlowAndScore",
    "AffinePath",
    "AsVelocity",
    "ScheduleTransformedModel",
    "gaussian_bridge",
    "log_likelihood",
    "encode",
    "decode",
    "LikelihoodResult",
    "ConditionalMLP",
    "UNet",
    "GuidedModel",
    "guided",
    "Trainer",
    "TrainerConfig",
    "ScoreFlowMatcher",
    "CNFObjective",
    "RunConfig",
    "train_run",
    "load_run",
    *_SUBMODULES,
    "__version__",
]
