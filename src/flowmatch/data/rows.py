"""Which rows a training batch takes: ``n`` distinct row indices of ``range(N)``, uniformly at random.

Every batch source of a fixed training set (:class:`~flowmatch.data.batches.TensorBatches`, a
memory-mapped array, a map-style Dataset) draws its rows here, from the Trainer's generator, so
that the same seed gives the same rows whatever holds the data.

Two exact samplers of the same distribution, the uniform law on ordered n-tuples of distinct rows
(the law of ``torch.randperm(N)[:n]``):

- ``"permutation"``: the first ``n`` entries of a full random permutation. O(N) time and memory
  per batch: at a million rows the permutation costs more than a small model's step.
- ``"rejection"``: ``n`` indices drawn with replacement (``torch.randint``); the positions holding
  a value already held by an earlier position are redrawn, and so on until all ``n`` differ.
  O(n log n) per round (a stable sort finds the repeats) and few rounds: a round leaves about
  ``k^2 / 2N`` repeats of its ``k`` redraws. Why the law is exact: the procedure treats every row
  label alike (relabelling the rows by any permutation sigma maps its runs onto runs of equal
  probability, since each draw is uniform and the repeat test only compares labels), so the law of
  its output is invariant under every sigma; it only outputs distinct n-tuples, and sigma acts
  transitively on those, so all of them are equally likely.

``"auto"`` keeps the permutation where it is cheap (``N <= PERMUTATION_MAX_ROWS``) or where
rejection would need many rounds (``n > N / 4``), so small data sets keep the exact batches of
earlier versions (and their checkpoints resume onto the same stream), and takes the rejection
sampler otherwise. Both consume the generator deterministically, so a resumed run redraws the
same rows from the checkpointed generator state.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int

__all__ = ["draw_rows", "ROW_SAMPLERS", "PERMUTATION_MAX_ROWS"]

#: Up to this many rows "auto" draws a full permutation (about 0.3 ms on a CPU core).
PERMUTATION_MAX_ROWS = 1 << 16

ROW_SAMPLERS = ("auto", "permutation", "rejection")


def draw_rows(
    n_rows: int,
    n: int,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    method: str = "auto",
) -> Tensor:
    """``n`` distinct row indices of ``range(n_rows)``, an ordered uniform sample without replacement.

    Args:
        n_rows: ``N``, the number of rows (>= 1).
        n: the batch size, ``1 <= n <= N``.
        generator: the source of randomness (its device is where the indices are drawn).
        device: where the indices are drawn (default: the generator's device, else the CPU).
        method: ``"auto"``, ``"permutation"`` or ``"rejection"`` (module docstring).

    Returns:
        int64 indices ``(n,)`` on ``device``.
    """
    n_rows = check_positive_int("number of rows", n_rows)
    n = check_positive_int("batch size", n)
    if n > n_rows:
        raise ValueError(f"batch size must not exceed the {n_rows} rows, got {n}")
    if method not in ROW_SAMPLERS:
        raise ValueError(f"row sampler must be one of {', '.join(ROW_SAMPLERS)}, got {method!r}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    if method == "auto":
        method = "permutation" if (n_rows <= PERMUTATION_MAX_ROWS or 4 * n > n_rows) else "rejection"
    if method == "permutation":
        return torch.randperm(n_rows, generator=generator, device=device)[:n]
    idx = torch.randint(n_rows, (n,), generator=generator, device=device)
    while True:
        values, order = torch.sort(idx, stable=True)  # equal values keep their positions' order
        repeat = order[1:][values[1:] == values[:-1]]  # every position but the first of each value
        if repeat.numel() == 0:
            return idx
        idx[repeat] = torch.randint(n_rows, (repeat.numel(),), generator=generator, device=device)
