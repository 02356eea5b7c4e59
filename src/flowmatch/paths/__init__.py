"""Conditional probability paths x_t = mu_t(x0, x1) + sigma_t eps with their velocities u_t
(Tong et al. TMLR 2024, Table 1; Lipman et al. ICLR 2023): see :mod:`~flowmatch.paths.conditional`."""

from flowmatch.paths.conditional import (
    BrownianBridgePath,
    GaussianToDataPath,
    LinearPath,
    ProbabilityPath,
    VPTrigPath,
    pad_t,
)

__all__ = ["ProbabilityPath", "LinearPath", "GaussianToDataPath", "BrownianBridgePath", "VPTrigPath", "pad_t"]
