"""Random train/test split of a sample, as the paper's code splits one large draw.

Tong et al. (TMLR 2024) draw one sample per distribution and split it at random into
train / validation / test parts (10000 / 1000 / 1000 points for the 2D benchmark).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DataSplit", "train_test_split", "n_test_rows"]


@dataclass(frozen=True)
class DataSplit:
    """Disjoint rows of one sample: ``train`` ``(N_train, *dims)``, ``test`` ``(N_test, *dims)``."""

    train: Tensor
    test: Tensor


def n_test_rows(n: int, test_size: int | float) -> int:
    """Number of test rows out of ``n``: ``test_size`` itself (int) or ``ceil(test_size * n)``.

    A float must lie in (0, 1) (a fraction, rounded up as scikit-learn does); an int is a count.
    Both parts must be non-empty: ``1 <= n_test <= n - 1``. Raises ``ValueError`` otherwise.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise ValueError(f"test_size must be an int count or a float fraction in (0, 1), got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    else:
        frac = float(test_size)
        if not (0.0 < frac < 1.0):
            raise ValueError(f"test_size as a float must be a fraction in (0, 1), got {test_size!r}")
        n_test = math.ceil(frac * n)
    if not (1 <= n_test <= n - 1):
        raise ValueError(
            f"test_size must leave both parts non-empty (1 <= n_test <= {n - 1} for {n} rows), "
            f"got test_size={test_size!r} (n_test={n_test})"
        )
    return n_test


def train_test_split(x: Tensor, *, test_size: int | float, generator: torch.Generator | None = None) -> DataSplit:
    """Split the rows of ``x`` ``(N, *dims)`` at random into train and test parts.

    A uniformly random permutation ``pi`` of the rows is drawn with ``generator``; the test part
    is ``x[pi[:n_test]]`` and the train part ``x[pi[n_test:]]``, where ``n_test`` is ``test_size``
    (int) or ``ceil(test_size * N)`` (float in (0, 1)). Both parts must be non-empty.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError(f"x must have a leading row dimension (N, *dims), got shape {tuple(x.shape)}")
    n_test = n_test_rows(int(x.shape[0]), test_size)
    device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(x.shape[0], generator=generator, device=device).to(x.device)
    return DataSplit(train=x[perm[n_test:]], test=x[perm[:n_test]])
