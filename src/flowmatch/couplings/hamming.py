"""Exact minibatch OT of token sequences for the Hamming cost: :class:`HammingOT`.

The discrete analogue of OT-CFM's pairing (Tong et al. TMLR 2024): among all one-to-one pairings
of a source batch x0 and a target batch x1 of token sequences ``(B, L)``, the one that minimises
the total number of differing tokens,

    sigma* = argmin_sigma sum_i H(x0_i, x1_sigma(i)),  H(a, b) = sum_k m_k 1[a_k != b_k],

with m the valid tokens of the target (padding is never counted). Along a mixture path
(:mod:`flowmatch.paths.mixture`) a token jumps only where x0 and x1 differ, so the OT pairing
minimises the expected number of jumps a sample makes. It is meaningful for a source with varied
sequences (the uniform source); with the masked source every x0 is the same sequence, every pairing
costs the same and the pairing is arbitrary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice
from flowmatch.couplings.base import Coupling, Pairing, check_equal_sizes
from flowmatch.ot.assignment import SOLVERS, solve_assignment

__all__ = ["HammingOT", "hamming_cost"]


def hamming_cost(x0: Tensor, x1: Tensor, mask: Tensor | None = None) -> Tensor:
    """C_ij = sum_k m_jk 1[x0_ik != x1_jk] (n, m) float64 on the CPU; ``mask`` (m, L) the valid
    tokens of x1's rows (None: all valid)."""
    if x0.dim() != 2 or x1.dim() != 2 or x0.shape[1] != x1.shape[1]:
        raise ValueError(f"token batches must be (n, L) and (m, L), got {tuple(x0.shape)} and {tuple(x1.shape)}")
    a, b = x0.detach().cpu().long(), x1.detach().cpu().long()
    diff = (a[:, None, :] != b[None, :, :]).to(torch.float64)
    if mask is not None:
        m = mask.detach().cpu().reshape(b.shape).to(torch.float64)
        diff = diff * m[None, :, :]
    return diff.sum(-1)


class HammingOT(Coupling):
    """Exact OT pairing of token sequences for the Hamming cost (:func:`hamming_cost`), a
    permutation solved by :func:`flowmatch.ot.assignment.solve_assignment`.

    Example:
        >>> import torch
        >>> x0 = torch.tensor([[0, 0], [1, 1]])
        >>> x1 = torch.tensor([[1, 1], [0, 1]])
        >>> HammingOT()(x0, x1).i1
        tensor([1, 0])
    """

    deterministic = True
    uses_mask = True

    def __init__(self, solver: str = "auto"):
        self.solver = check_choice("solver", solver, SOLVERS)

    def cost(self, x0: Tensor, x1: Tensor, mask: Tensor | None = None) -> Tensor:
        """The (n, n) float64 cost matrix this coupling minimises."""
        return hamming_cost(x0, x1, mask)

    def pair(
        self, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None, mask: Tensor | None = None
    ) -> Pairing:
        check_equal_sizes(x0, x1, "Hamming OT pairing")
        n = x0.shape[0]
        i0 = torch.arange(n, device=x0.device)
        if n == 1:
            return Pairing(i0, torch.zeros(1, dtype=torch.long, device=x1.device))
        perm = solve_assignment(self.cost(x0, x1, mask).numpy(), solver=self.solver).perm
        return Pairing(i0, torch.from_numpy(perm).to(x1.device))
