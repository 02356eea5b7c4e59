"""AnnData (``.h5ad``) files as snapshot time courses, the way single-cell time courses are stored.

One row (``obs``) per cell. The time label of each cell is the column ``time_key`` of ``obs`` (e.g.
``day``; by default the one column named ``t`` or ``time``, any case); its sorted distinct values are
the time points. The features of each cell are:

- ``embedding=None``: the expression matrix ``X`` itself (dense or sparse, densified);
- ``embedding="X_pca"`` (any key of ``obsm``): that embedding, e.g. the PCA scanpy stored;
- ``embedding=n`` (an integer, or its digits as text): the first n principal components of ``X``,
  computed on load by scikit-learn's PCA (centred, not scaled) seeded with ``seed``, so that a run
  loaded again sees the same coordinates.

Reading needs the optional ``anndata`` package (``pip install flowmatch[single-cell]``); without it
:func:`read_h5ad_snapshots` raises :class:`~flowmatch._utils.optional.MissingDependencyError`, a
ValueError with that line. Files are opened read-only (``backed="r"``), so an ``obsm`` embedding is
read without loading ``X``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowmatch._utils.optional import require

__all__ = ["read_h5ad_snapshots", "parse_embedding", "H5AD_SUFFIX"]

#: The file extension read by :func:`read_h5ad_snapshots`.
H5AD_SUFFIX = ".h5ad"
_TIME_NAMES = ("t", "time")


def parse_embedding(embedding: str | int | None) -> str | int | None:
    """``None`` (the matrix X), an obsm key (str) or a number of principal components (int >= 1;
    digits as text count as the number). Raises ValueError naming the rule and the value."""
    if embedding is None:
        return None
    if isinstance(embedding, str) and embedding.strip().isdigit():
        embedding = int(embedding.strip())
    if isinstance(embedding, bool) or not isinstance(embedding, (str, int)) or embedding in ("", 0):
        raise ValueError(
            f"embedding must be an obsm key (e.g. X_pca) or a number of principal components >= 1, got {embedding!r}"
        )
    if isinstance(embedding, int) and embedding < 1:
        raise ValueError(f"embedding must be a number of principal components >= 1, got {embedding}")
    return embedding


def _time_column(columns: Sequence[str], time_key: str | None, path: Path) -> str:
    if time_key is not None:
        if time_key not in columns:
            raise ValueError(
                f"time_key must be a column of obs in {str(path)!r}, got {time_key!r}; obs columns: {list(columns)}"
            )
        return time_key
    found = [c for c in columns if str(c).strip().lower() in _TIME_NAMES]
    if len(found) != 1:
        raise ValueError(
            f"snapshot h5ad {str(path)!r} needs time_key (the obs column of the time labels) or exactly one obs "
            f"column named 't' or 'time', got obs columns {list(columns)}"
        )
    return found[0]


def _times(values: Any, key: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    try:
        return np.array([float(v) for v in arr], dtype=np.float64)
    except (TypeError, ValueError):
        example = next((v for v in arr if not _is_number(v)), arr[0] if len(arr) else None)
        raise ValueError(
            f"time_key column {key!r} must hold numbers (e.g. 0, 2, 4.5), got values like {example!r}"
        ) from None


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _dense(matrix: Any) -> np.ndarray:
    """A backed or in-memory, dense or sparse matrix as a NumPy array."""
    if hasattr(matrix, "to_memory"):  # a backed sparse dataset
        matrix = matrix.to_memory()
    elif not isinstance(matrix, np.ndarray) and hasattr(matrix, "shape") and not hasattr(matrix, "toarray"):
        matrix = matrix[()]  # a backed dense h5py dataset
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return np.asarray(matrix)


def _pca(x: Any, n: int, seed: int, path: Path) -> np.ndarray:
    from sklearn.decomposition import PCA

    rows, cols = x.shape
    if n > min(rows, cols):
        raise ValueError(
            f"embedding must be at most min(cells, genes) = {min(rows, cols)} principal components of X "
            f"({rows} x {cols} in {str(path)!r}), got {n}"
        )
    if hasattr(x, "toarray"):
        x = x.tocsr().astype(np.float32)  # PCA centres sparse input implicitly (arpack)
    else:
        x = np.asarray(x, dtype=np.float32)
    return np.asarray(PCA(n_components=n, random_state=seed).fit_transform(x))


def read_h5ad_snapshots(
    path: str | os.PathLike[str], *, time_key: str | None = None, embedding: str | int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(x (N, D), t (N,))`` of the ``.h5ad`` file at ``path``: the cells' features (module docstring:
    X, an obsm embedding or ``embedding`` principal components of X by a PCA seeded with ``seed``)
    and their time labels (the obs column ``time_key``). Group them with
    :meth:`flowmatch.data.snapshots.Snapshots.from_labelled`."""
    anndata = require("anndata", feature="reading .h5ad", package="anndata", extra="single-cell")
    p = Path(path)
    emb = parse_embedding(embedding)
    try:
        adata = anndata.read_h5ad(p, backed="r")
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ValueError(f"malformed snapshot h5ad {str(p)!r}: {' '.join(str(err).split())}") from None
    try:
        key = _time_column([str(c) for c in adata.obs.columns], time_key, p)
        t = _times(adata.obs[key].to_numpy(), key)
        if isinstance(emb, str):
            if emb not in adata.obsm:
                raise ValueError(
                    f"embedding must be an obsm key of {str(p)!r} or a number of principal components, got "
                    f"{emb!r}; obsm keys: {list(adata.obsm.keys())}"
                )
            x = np.asarray(adata.obsm[emb])
        elif adata.X is None:
            raise ValueError(f"snapshot h5ad {str(p)!r} has no matrix X: name an obsm embedding (e.g. X_pca)")
        elif emb is None:
            x = _dense(adata.X)
        else:
            x = _pca(adata.X.to_memory() if hasattr(adata.X, "to_memory") else _dense(adata.X), emb, seed, p)
    finally:
        if getattr(adata, "file", None) is not None:
            adata.file.close()
    if x.ndim != 2:
        raise ValueError(f"snapshot h5ad features must be a (cells, D) matrix, got shape {x.shape} in {str(p)!r}")
    return x, t
