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

# Public names and the module that defines each. They are imported on first use (PEP 562), so
# that `import flowmatch.cli` (and `flowmatch --help`) does not pay for importing torch and POT.
_LAZY = {
    "FlowMatcher": "flowmatch.matcher",
    "PathSample": "flowmatch.matcher",
    "MLP": "flowmatch.models",
    "ExactOT": "flowmatch.couplings",
    "Independent": "flowmatch.couplings",
    "Sinkhorn": "flowmatch.couplings",
    "SampleResult": "flowmatch.solvers",
    "sample": "flowmatch.solvers",
    "ode_solvers": "flowmatch.solvers",
    "sample_sde": "flowmatch.sde",
    "FlowAndScore": "flowmatch.models",
    "log_likelihood": "flowmatch.likelihood",
    "encode": "flowmatch.likelihood",
    "decode": "flowmatch.likelihood",
    "LikelihoodResult": "flowmatch.likelihood",
    "ConditionalMLP": "flowmatch.models",
    "UNet": "flowmatch.models",
    "GuidedModel": "flowmatch.guidance",
    "guided": "flowmatch.guidance",
}
_SUBMODULES = ("methods", "paths", "couplings", "gaussian_bridge")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"flowmatch.{name}")
    raise AttributeError(f"module 'flowmatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "sample_sde",
    "FlowAndScore",
    "gaussian_bridge",
    "log_likelihood",
    "encode",
    "decode",
    "LikelihoodResult",
    "ConditionalMLP",
    "UNet",
    "GuidedModel",
    "guided",
    "methods",
    "paths",
    "couplings",
    "__version__",
]
