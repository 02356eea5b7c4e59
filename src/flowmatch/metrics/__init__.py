"""Evaluation metrics for flow-matching models: distances between samples and path costs.

All functions are pure: they read their inputs and return Python floats (or a small dataclass).
Sample sets of shape ``(n, *dims)`` are flattened to ``(n, D)``; a 1-D input of shape ``(n,)`` is
read as ``n`` scalar samples (``D = 1``). Tensors and NumPy arrays are both accepted; every
computation is done in float64 on the CPU (except the model calls in :func:`straightness`, which
run on the model's device and dtype).

Definitions follow Tong et al., "Improving and Generalizing Flow-Based Generative Models with
Minibatch Optimal Transport", TMLR 2024 (Section 5 and Table 2): the 2D benchmark reports the exact
2-Wasserstein distance between generated and held-out target samples and the normalised path energy
(NPE) of the learned flow; see ``/work/shared/REFERENCES.md``, "2D benchmark".

Summary of the formulas (``x`` has ``n`` points, ``y`` has ``m`` points, weights ``a``, ``b``)::

    W_p(x, y)   = ( min_{P in U(a, b)} sum_ij P_ij ||x_i - y_j||^p )^(1/p)     (exact OT, POT emd2)
    MMD^2_u     = 1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
                  - 2/(nm) sum_ij k(x_i, y_j),     k(u, v) = sum_s exp(-||u - v||^2 / (2 s^2))
    E           = mean_i sum_k ||x^i_{k+1} - x^i_k||^2 / (t_{k+1} - t_k)        (path energy)
    NPE         = |E - W2^2(q0, q1)| / W2^2(q0, q1)
    S           = mean_i sum_k (dt_k / (t_T - t_0)) ||v(t_k, x^i_k) - (x^i_T - x^i_0)/(t_T - t_0)||^2

Layout: :mod:`flowmatch.metrics.distances` (W_p, MMD, :class:`SampleQuality`),
:mod:`flowmatch.metrics.paths` (E, NPE, S), :mod:`flowmatch.metrics._inputs` (input checks).
"""

from __future__ import annotations

from flowmatch.metrics.distances import (
    SampleQuality,
    median_pairwise_distance,
    mmd_rbf,
    sample_quality,
    w1,
    w2,
    wasserstein,
)
from flowmatch.metrics.paths import normalized_path_energy, path_energy, straightness

__all__ = [
    "wasserstein",
    "w1",
    "w2",
    "mmd_rbf",
    "median_pairwise_distance",
    "path_energy",
    "normalized_path_energy",
    "straightness",
    "SampleQuality",
    "sample_quality",
]
