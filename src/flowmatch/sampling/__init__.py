"""Integrating a trained field: ODE solvers (:mod:`~flowmatch.sampling.ode`, optionally with the
log-density of the samples), the SDE of Schrödinger bridges (:mod:`~flowmatch.sampling.sde`),
DDIM / DDPM and the churn SDEs of affine Gaussian paths (:mod:`~flowmatch.sampling.diffusion`),
log-likelihoods and encode/decode (:mod:`~flowmatch.sampling.likelihood`, with the divergences of
:mod:`~flowmatch.sampling.divergence`), and few-step jumps of average-velocity networks
(:mod:`~flowmatch.sampling.average`)."""

from flowmatch.sampling.average import sample_average
from flowmatch.sampling.diffusion import sample_diffusion
from flowmatch.sampling.encode import decode, encode
from flowmatch.sampling.likelihood import LikelihoodResult, log_likelihood
from flowmatch.sampling.ode import SampleResult, ode_solvers, sample
from flowmatch.sampling.sde import sample_sde

__all__ = [
    "SampleResult",
    "sample",
    "ode_solvers",
    "sample_sde",
    "sample_diffusion",
    "sample_average",
    "LikelihoodResult",
    "log_likelihood",
    "encode",
    "decode",
]
