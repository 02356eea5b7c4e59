"""Conditional probability paths x_t = mu_t(x0, x1) + sigma_t eps with their velocities u_t
(Tong et al. TMLR 2024, Table 1; Lipman et al. ICLR 2023): the path interface and the Brownian
bridge (:mod:`~flowmatch.paths.conditional`), affine paths with a scheduler
(:mod:`~flowmatch.paths.affine`, :mod:`~flowmatch.paths.schedulers`) and the conversions between
velocity, x1-, eps- and score-prediction (:mod:`~flowmatch.paths.conversions`)."""

from flowmatch.paths.affine import AffinePath, GaussianToDataPath, LinearPath, VPTrigPath
from flowmatch.paths.conditional import BrownianBridgePath, ProbabilityPath, pad_t
from flowmatch.paths.conversions import PARAMETRIZATIONS, convert, to_velocity, to_x1_eps
from flowmatch.paths.schedulers import (
    CallableScheduler,
    CondOTScheduler,
    CosineScheduler,
    LinearVPScheduler,
    PolynomialScheduler,
    Scheduler,
    SchedulerOutput,
    VPScheduler,
    parse_scheduler,
    scheduler_names,
)

__all__ = [
    "ProbabilityPath",
    "AffinePath",
    "LinearPath",
    "GaussianToDataPath",
    "BrownianBridgePath",
    "VPTrigPath",
    "pad_t",
    "Scheduler",
    "SchedulerOutput",
    "CondOTScheduler",
    "PolynomialScheduler",
    "VPScheduler",
    "LinearVPScheduler",
    "CosineScheduler",
    "CallableScheduler",
    "parse_scheduler",
    "scheduler_names",
    "PARAMETRIZATIONS",
    "convert",
    "to_velocity",
    "to_x1_eps",
]
