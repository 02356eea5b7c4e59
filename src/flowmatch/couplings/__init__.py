"""Couplings: how a source batch x0 and a target batch x1 are paired before the path is drawn.

A coupling pi(x0, x1) is the joint law from which CFM draws its pairs (Tong et al. TMLR 2024,
Section 3). On a minibatch it returns a :class:`Pairing`: row indices into x0 and x1 such that
(x0[i0[k]], x1[i1[k]]) is the k-th pair.

- :class:`Independent` -- pi = q0 x q1 (I-CFM, FM, VP-CFM, RF): the batches are already
  independent draws, so the identity pairing is a sample of the product coupling.
- :class:`ExactOT` -- the exact minibatch OT plan for the squared Euclidean cost (OT-CFM). With
  equal batch sizes it is a permutation: every pair is distinct and the total cost is the optimum.
- :class:`ConditionalOT` -- exact OT for C = ||x0 - x1||^2 + lambda d(c0, c1), a cost that also
  charges condition differences.
- :class:`BlockOT` -- exact OT within blocks of a large batch (4096 to 16384 rows and more):
  memory and time of ``block_size``-sized problems, not of the full n x n one.
- :class:`Sinkhorn` -- the entropic OT plan (SB-CFM), sampled per row (with replacement across
  rows) or without replacement (``sampling=``).
- :class:`UnbalancedOT`, :class:`PartialOT` -- unbalanced entropic OT and exact partial OT (POT):
  mass that is expensive to move (outliers) is dropped.
- Label-restricted OT (pairs never cross labels, optimal within each label) is
  :class:`flowmatch.couplings.WithinLabels` around any of these.

Modules: :mod:`~flowmatch.couplings.base` (the interface, two phases: draw now, solve later),
:mod:`~flowmatch.couplings.exact`, :mod:`~flowmatch.couplings.entropic`,
:mod:`~flowmatch.couplings.sampling` (pairs from a plan that is not a permutation, with or without
replacement) and :mod:`~flowmatch.couplings.labels` (label-restricted couplings).
"""

from __future__ import annotations

from flowmatch._utils.validate import check_choice
from flowmatch.couplings.base import Coupling, Independent, Pairing
from flowmatch.couplings.entropic import PartialOT, Sinkhorn, UnbalancedOT
from flowmatch.couplings.exact import BlockOT, ConditionalOT, ExactOT
from flowmatch.couplings.labels import WithinLabels, condition_groups
from flowmatch.couplings.sampling import SAMPLINGS, pairs_from_plan

__all__ = [
    "Pairing",
    "Coupling",
    "Independent",
    "ExactOT",
    "ConditionalOT",
    "BlockOT",
    "Sinkhorn",
    "UnbalancedOT",
    "PartialOT",
    "WithinLabels",
    "condition_groups",
    "SAMPLINGS",
    "pairs_from_plan",
    "get_coupling",
    "coupling_names",
]


_COUPLINGS = {
    "independent": Independent,
    "exact": ExactOT,
    "conditional": ConditionalOT,
    "block": BlockOT,
    "sinkhorn": Sinkhorn,
    "unbalanced": UnbalancedOT,
    "partial": PartialOT,
}


def coupling_names() -> list[str]:
    """Names accepted by :func:`get_coupling`."""
    return sorted(_COUPLINGS)


def get_coupling(name: str, **kwargs) -> Coupling:
    """Build a coupling by name (kwargs to its constructor): ``independent``, ``exact``, ``conditional``, ``block``,
    ``sinkhorn``, ``unbalanced`` or ``partial``."""
    check_choice("coupling", name, tuple(_COUPLINGS))
    return _COUPLINGS[name](**kwargs)
