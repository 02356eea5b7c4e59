"""Optimal transport solvers: exact assignment (the compiled epsilon-scaling auction, POT's network
simplex, SciPy's shortest augmenting paths), log-domain Sinkhorn, unbalanced and partial OT.

:mod:`~flowmatch.ot.assignment` solves min_s sum_i C[i, s(i)]; :mod:`~flowmatch.ot.transport`
builds costs and plans; :mod:`~flowmatch.ot.native` compiles and loads the C kernel
(``_auction.c``). Couplings (:mod:`flowmatch.couplings`) are built on these.
"""

from flowmatch.ot.assignment import (
    SOLVERS,
    Assignment,
    AssignmentWarning,
    native_available,
    solve_assignment,
    solve_assignments,
)
from flowmatch.ot.transport import (
    SinkhornResult,
    SinkhornWarning,
    exact_ot_permutation,
    partial_ot_plan,
    sinkhorn_log,
    squared_cost,
    unbalanced_sinkhorn_plan,
)

__all__ = [
    "Assignment",
    "AssignmentWarning",
    "SOLVERS",
    "native_available",
    "solve_assignment",
    "solve_assignments",
    "SinkhornResult",
    "SinkhornWarning",
    "exact_ot_permutation",
    "partial_ot_plan",
    "sinkhorn_log",
    "squared_cost",
    "unbalanced_sinkhorn_plan",
]
