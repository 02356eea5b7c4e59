"""Named flow matching methods with the defaults of Tong et al. (TMLR 2024), Table 1.

>>> from flowmatch import methods
>>> methods.names()
['cfm-consistency', 'cnf', 'dfm', 'fm', 'i-cfm', 'meanflow', 'ot-cfm', 'ot-dfm', 'ot-meanflow', 'regression', 'rf', 'sb-cfm', 'shortcut', 'vp-cfm']
>>> methods.get("ot-cfm", sigma=0.1).coupling
ExactOT()

| name   | path                                  | coupling                        | default sigma |
|--------|---------------------------------------|---------------------------------|---------------|
| i-cfm  | linear, constant sigma                | independent                     | 0.1           |
| ot-cfm | linear, constant sigma                | exact minibatch OT (permutation)| 0.1           |
| fm     | Lipman's Gaussian-to-data, sigma_min  | independent (source = N(0, I))  | 0.1           |
| sb-cfm | Brownian bridge sigma sqrt(t(1-t))    | entropic OT, epsilon = 2 sigma^2| 1.0           |
| vp-cfm | trigonometric, constant sigma         | independent                     | 0.1           |
| rf     | linear, sigma = 0                     | independent (reflow: retrain on model pairs) | 0 |
| meanflow, ot-meanflow | linear, constant sigma; the average velocity u(x, t, h) | independent / exact OT | 0 |
| shortcut | linear, constant sigma; the step-size-conditioned velocity s(x, t, d) | independent | 0 |
| cfm-consistency | linear, constant sigma; velocity consistency of the straight extrapolation | independent | 0 |
| dfm, ot-dfm | mixture path over tokens (discrete; :mod:`flowmatch.objectives.discrete`) | independent / Hamming OT | - |
| cnf    | none: maximum likelihood through the ODE solve (baseline, not flow matching) | - | - |

``cnf`` is the simulation-based baseline (Chen et al. 2018; Grathwohl et al. 2019): its build
returns a :class:`flowmatch.objectives.cnf.CNFObjective` (same ``.loss``/``.name`` interface), not a
FlowMatcher; ``spec("cnf").simulation_free`` is False.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from flowmatch._utils.validate import check_choice, check_fits_float32, check_nonnegative_float
from flowmatch.couplings import ExactOT, Independent, Sinkhorn
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.paths import BrownianBridgePath, GaussianToDataPath, LinearPath, VPTrigPath

if TYPE_CHECKING:
    from flowmatch.objectives.cnf import CNFObjective
    from flowmatch.objectives.regression import RegressionObjective

__all__ = ["MethodSpec", "get", "get_flow_matcher", "check_sigma", "names", "spec"]

#: What a method's build returns: a FlowMatcher, or the CNF baseline's maximum-likelihood objective.
Objective = Union[FlowMatcher, "CNFObjective", "RegressionObjective"]


@dataclass(frozen=True)
class MethodSpec:
    """A named method: how to build its FlowMatcher and what it expects of the data."""

    name: str
    description: str
    default_sigma: float
    build: Callable[[float], Objective]
    #: The method's path assumes x0 ~ N(0, I) (Lipman's FM).
    requires_gaussian_source: bool = False
    #: sigma has to be 0 (rectified flow is deterministic).
    fixed_sigma: bool = False
    #: False for the CNF baseline: its loss integrates the ODE, and build returns a CNFObjective.
    simulation_free: bool = True
    #: The method also learns the score of its path ([SF]2M): build returns a ScoreFlowMatcher and
    #: runs build a FlowAndScore model, sampled as an SDE by ``flowmatch.sample_sde``.
    learns_score: bool = False
    #: Its coupling pairs the batches (an OT problem per step, worth solving ahead in a worker).
    pairs: bool = False
    #: False for the regression baseline: no flow, the network predicts x1 from the condition.
    is_flow: bool = True
    #: The network is an average velocity u(x, t, h) (MeanFlow): runs build an AverageVelocityMLP and
    #: sample it by its jumps (flowmatch.sample_average).
    average_velocity: bool = False
    #: The objective is defined for a velocity network only (no x1/eps/score target parametrisation).
    velocity_only: bool = False
    #: Discrete flow matching over tokens: built on the data's vocabulary by
    #: :func:`flowmatch.objectives.discrete.discrete_method`, not by :func:`get`.
    discrete: bool = False


def _cnf(sigma: float) -> CNFObjective:
    from flowmatch.objectives.cnf import CNFObjective  # lazy: the CNF loss needs the solvers

    return CNFObjective(name="cnf")


def _regression(sigma: float) -> RegressionObjective:
    from flowmatch.objectives.regression import RegressionObjective

    return RegressionObjective()


def _sb(sigma: float) -> FlowMatcher:
    """SB-CFM / [SF]2M: Brownian bridge sigma sqrt(t(1-t)), entropic OT with epsilon = 2 sigma^2 in
    the squared cost's own units (the static Schrödinger problem for the reference sigma W, whose
    kernel is exp(-||x0 - x1||^2 / (2 sigma^2))), plus the score term for models with a score."""
    from flowmatch.objectives.sf2m import ScoreFlowMatcher

    return ScoreFlowMatcher(
        BrownianBridgePath(sigma), Sinkhorn(2.0 * sigma * sigma, reg_scale="absolute"), name="sb-cfm"
    )


def _meanflow(sigma: float, coupling, name: str) -> FlowMatcher:
    from flowmatch.objectives.meanflow import MeanFlowMatcher

    return MeanFlowMatcher(LinearPath(sigma), coupling, name=name)


def _shortcut(sigma: float) -> FlowMatcher:
    from flowmatch.objectives.shortcut import ShortcutMatcher

    return ShortcutMatcher(LinearPath(sigma), Independent(), name="shortcut")


def _consistency(sigma: float) -> FlowMatcher:
    from flowmatch.objectives.consistency import ConsistencyMatcher

    return ConsistencyMatcher(LinearPath(sigma), Independent(), name="cfm-consistency")


def _token_method(name: str) -> Callable[[float], Objective]:
    def build(sigma: float) -> Objective:
        raise ValueError(
            f"method {name!r} trains on tokens and needs their vocabulary: build it with "
            f"flowmatch.objectives.discrete.discrete_method({name!r}, path)"
        )

    return build


_SPECS: dict[str, MethodSpec] = {
    s.name: s
    for s in [
        MethodSpec(
            "i-cfm",
            "independent coupling, straight path with constant noise sigma (Tong et al. 2024)",
            0.1,
            lambda s: FlowMatcher(LinearPath(s), Independent(), name="i-cfm"),
        ),
        MethodSpec(
            "ot-cfm",
            "exact minibatch OT coupling, straight path with constant noise sigma (Tong et al. 2024)",
            0.1,
            lambda s: FlowMatcher(LinearPath(s), ExactOT(), name="ot-cfm"),
            pairs=True,
        ),
        MethodSpec(
            "fm",
            "flow matching from N(0, I) with Lipman's OT path, sigma = sigma_min (Lipman et al. 2023)",
            0.1,
            lambda s: FlowMatcher(GaussianToDataPath(s), Independent(), name="fm"),
            requires_gaussian_source=True,
        ),
        MethodSpec(
            "sb-cfm",
            "Schrodinger bridge: Brownian-bridge path, entropic OT coupling with epsilon = 2 sigma^2, "
            "velocity and score learned together ([SF]2M, Tong et al. 2024)",
            1.0,
            _sb,
            learns_score=True,
            pairs=True,
        ),
        MethodSpec(
            "vp-cfm",
            "variance-preserving trigonometric interpolant, independent coupling (Albergo & Vanden-Eijnden 2023)",
            0.1,
            lambda s: FlowMatcher(VPTrigPath(s), Independent(), name="vp-cfm"),
        ),
        MethodSpec(
            "rf",
            "rectified flow: straight path, sigma = 0, independent coupling (Liu et al. 2023)",
            0.0,
            lambda s: FlowMatcher(LinearPath(0.0), Independent(), name="rf"),
            fixed_sigma=True,
        ),
        MethodSpec(
            "meanflow",
            "MeanFlow: the average velocity over [t, t + h] by the MeanFlow identity, one-step sampling, "
            "independent coupling, straight path with constant noise sigma (Geng et al. 2025)",
            0.0,
            lambda s: _meanflow(s, Independent(), "meanflow"),
            average_velocity=True,
            velocity_only=True,
        ),
        MethodSpec(
            "ot-meanflow",
            "MeanFlow on exact minibatch OT pairs (straighter targets)",
            0.0,
            lambda s: _meanflow(s, ExactOT(), "ot-meanflow"),
            pairs=True,
            average_velocity=True,
            velocity_only=True,
        ),
        MethodSpec(
            "shortcut",
            "shortcut model: the step size as an input, flow matching at d = 0 and two d steps as one 2d step, "
            "independent coupling (Frans et al. 2024)",
            0.0,
            _shortcut,
            average_velocity=True,
            velocity_only=True,
        ),
        MethodSpec(
            "cfm-consistency",
            "consistency flow matching: the straight extrapolation x + (1 - t) v(x, t) made the same at t and "
            "t + delta of one path, a one-step velocity field, independent coupling (Yang et al. 2024)",
            0.0,
            _consistency,
            velocity_only=True,
        ),
        MethodSpec(
            "cnf",
            "CNF baseline: maximum likelihood with backpropagation through an rk4 solve, Hutchinson trace "
            "(Chen et al. 2018; Grathwohl et al. 2019)",
            0.0,
            _cnf,
            requires_gaussian_source=True,
            fixed_sigma=True,
            simulation_free=False,
        ),
        MethodSpec(
            "regression",
            "baseline for conditional sequences: the same network trained by L2 to predict x1 from the "
            "condition (the conditional mean: over-smoothed)",
            0.0,
            _regression,
            fixed_sigma=True,
            is_flow=False,
        ),
        MethodSpec(
            "dfm",
            "discrete flow matching: mixture path over tokens from a masked or uniform source, posterior "
            "network, CTMC Euler sampler, independent coupling (Gat et al. 2024)",
            0.0,
            _token_method("dfm"),
            fixed_sigma=True,
            discrete=True,
        ),
        MethodSpec(
            "ot-dfm",
            "discrete flow matching on exact minibatch OT pairs by Hamming cost (fewer token jumps)",
            0.0,
            _token_method("ot-dfm"),
            fixed_sigma=True,
            pairs=True,
            discrete=True,
        ),
    ]
}


def names() -> list[str]:
    """All registered method names."""
    return sorted(_SPECS)


def spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of a method; unknown names raise ValueError listing the valid ones."""
    check_choice("method", name, tuple(_SPECS))
    return _SPECS[name]


def check_sigma(name: str, sigma: float | None) -> float:
    """The method's sigma (``None``: the paper's default), checked against its rules without
    building anything: >= 0 and finite in float32, 0 for the deterministic methods, sigma_min < 1
    for fm, > 0 for sb-cfm with 2 sigma^2 finite in float32."""
    s = spec(name)
    if sigma is None:
        sigma = s.default_sigma
    sigma = check_nonnegative_float("sigma", sigma)
    if s.fixed_sigma and sigma != 0:
        raise ValueError(f"method {name!r} is deterministic and needs sigma = 0, got {sigma}")
    if name == "fm" and sigma >= 1:
        raise ValueError(f"fm needs sigma_min in [0, 1), got {sigma}")
    if name == "sb-cfm":
        if sigma == 0:
            raise ValueError("sb-cfm needs sigma > 0 (entropic regularisation 2 sigma^2), got 0.0")
        epsilon = 2.0 * sigma * sigma  # (sigma**2 raises OverflowError past 1.3e154)
        check_fits_float32("sigma", sigma, "sb-cfm's entropic regularisation 2 sigma^2", epsilon)
    return check_fits_float32("sigma", sigma)  # the paths compute in float32


def get_flow_matcher(name: str, *, sigma: float | None = None) -> FlowMatcher:
    """:func:`get` for the flow matching methods only (every one but the CNF baseline)."""
    fm = get(name, sigma=sigma)
    if not isinstance(fm, FlowMatcher):
        how = "by maximum likelihood" if name == "cnf" else "by regression"
        raise ValueError(
            f"method {name!r} is not a flow matching method (it trains {how}); "
            f"choose one of: {', '.join(n for n in names() if spec(n).simulation_free and spec(n).is_flow and not spec(n).discrete)}"
        )
    return fm


def get(name: str, *, sigma: float | None = None) -> Objective:
    """Build the FlowMatcher of a named method (for ``cnf`` its CNFObjective); ``sigma=None``
    takes the paper's default (checked by :func:`check_sigma`)."""
    return spec(name).build(check_sigma(name, sigma))
