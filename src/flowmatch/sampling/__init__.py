"""Integrating a trained field: ODE solvers (:mod:`~flowmatch.sampling.ode`), the SDE of
Schrödinger bridges (:mod:`~flowmatch.sampling.sde`), log-likelihoods and encode/decode
(:mod:`~flowmatch.sampling.likelihood`)."""

from flowmatch.sampling.encode import decode, encode
from flowmatch.sampling.likelihood import LikelihoodResult, log_likelihood
from flowmatch.sampling.ode import SampleResult, ode_solvers, sample
from flowmatch.sampling.sde import sample_sde

__all__ = [
    "SampleResult",
    "sample",
    "ode_solvers",
    "sample_sde",
    "LikelihoodResult",
    "log_likelihood",
    "encode",
    "decode",
]
