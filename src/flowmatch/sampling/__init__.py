"""Integrating a trained field: ODE solvers (:mod:`~flowmatch.sampling.ode`), the SDE of
Schrödinger bridges (:mod:`~flowmatch.sampling.sde`), log-likelihoods and encode/decode
(:mod:`~flowmatch.sampling.likelihood`)."""

from flowmatch.sampling.likelihood import LikelihoodResult, decode, encode, log_likelihood
from flowmatch.sampling.ode import SampleResult, ode_solvers, sample
from flowmatch.sampling.sde import sample_sde

__all__ = ["SampleResult", "sample", "ode_solvers", "sample_sde", "LikelihoodResult", "log_likelihood", "encode", "decode"]
