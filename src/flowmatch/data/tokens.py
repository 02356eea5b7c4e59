"""Built-in token data for discrete flow matching, offline:

- ``digits-tokens``: scikit-learn's 8x8 handwritten digits (1797 images, shipped inside the
  package) as 64 tokens each, one per pixel, over the 17 grey levels 0..16 (V = 17). Tokens map to
  the continuous digits' pixel values by v / 8 - 1 (:func:`tokens_to_images`), so the image
  metrics of continuous digits score them unchanged.
- ``brackets``: words of the Dyck language over two bracket pairs, ``()`` and ``[]`` (V = 4:
  ``( ) [ ]`` = 0 1 2 3), of 1 to ``max_pairs`` pairs (uniform), padded to 2 max_pairs tokens with a
  mask of the valid ones. Each word of n pairs is uniform among the Catalan(n) bracket shapes
  (the cycle lemma: the one rotation of a uniform arrangement of n openings and n + 1 closings
  whose proper prefixes never close more than they open; Dershowitz & Zaks 1980), with a uniform
  type per pair. :func:`is_dyck` checks a word exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_positive_int

__all__ = [
    "TokenData",
    "TOKEN_DATASETS",
    "is_token_spec",
    "load_digit_tokens",
    "tokens_to_images",
    "dyck_words",
    "is_dyck",
    "valid_fraction",
    "BRACKETS",
    "load_token_data",
    "word_text",
]

TOKEN_DATASETS = ("digits-tokens", "brackets")
BRACKETS = "()[]"
#: grey levels of the digits (pixel values 0..16)
DIGIT_LEVELS = 17


@dataclass
class TokenData:
    """Token sequences ``tokens`` (N, L) int64 over ``[0, vocab_size)``, the valid positions
    ``mask`` (N, L) bool (None: all valid), class ``labels`` (N,) with their names, or None."""

    tokens: Tensor
    vocab_size: int
    name: str
    mask: Tensor | None = None
    labels: Tensor | None = None
    classes: tuple[str, ...] = ()

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def is_token_spec(spec: str) -> bool:
    """Whether a target names built-in token data."""
    return isinstance(spec, str) and spec in TOKEN_DATASETS


def load_digit_tokens() -> TokenData:
    """scikit-learn's digits as (1797, 64) tokens in 0..16 (row-major pixels), labels 0..9."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise ValueError("the digits-tokens data set needs scikit-learn (pip install scikit-learn)") from None
    d = _load()
    x = torch.from_numpy(np.asarray(d.images, dtype=np.int64)).reshape(-1, 64)
    y = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
    return TokenData(x, DIGIT_LEVELS, "digits-tokens", labels=y, classes=tuple(str(i) for i in range(10)))


def tokens_to_images(tokens: Tensor) -> Tensor:
    """Digit tokens (N, 64) -> images (N, 1, 8, 8) in [-1, 1]: v / 8 - 1, as
    :func:`flowmatch.data.images.load_digits` maps pixel values."""
    if tokens.dim() != 2 or tokens.shape[1] != 64:
        raise ValueError(f"digit tokens must be (N, 64), got shape {tuple(tokens.shape)}")
    return (tokens.to(torch.float32) / 8.0 - 1.0).reshape(-1, 1, 8, 8)


def _dyck_shape(n: int, generator: torch.Generator | None) -> list[int]:
    """A uniform Dyck path of n pairs as +1/-1 steps (the cycle lemma)."""
    order = torch.randperm(2 * n + 1, generator=generator).tolist()
    steps = [1 if i < n else -1 for i in order]
    sums, s = [], 0
    for v in steps:
        s += v
        sums.append(s)
    j = sums.index(min(sums))  # the first minimum: the word starts right after it
    rotated = steps[j + 1 :] + steps[: j + 1]
    return rotated[:-1]  # drop the final closing step


def dyck_words(n: int, max_pairs: int = 8, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` words of the two-bracket Dyck language: tokens (n, 2 max_pairs) (padding 0) and the
    mask of valid tokens (n, 2 max_pairs) bool; see the module docstring for the law."""
    n = check_positive_int("n", n)
    max_pairs = check_positive_int("max_pairs", max_pairs)
    out = torch.zeros(n, 2 * max_pairs, dtype=torch.long)
    mask = torch.zeros(n, 2 * max_pairs, dtype=torch.bool)
    pairs = torch.randint(1, max_pairs + 1, (n,), generator=generator).tolist()
    for r, k in enumerate(pairs):
        shape = _dyck_shape(k, generator)
        kinds = torch.randint(0, 2, (k,), generator=generator).tolist()
        stack: list[int] = []
        word, opened = [], 0
        for v in shape:
            if v > 0:
                stack.append(kinds[opened])
                word.append(2 * kinds[opened])
                opened += 1
            else:
                word.append(2 * stack.pop() + 1)
        out[r, : 2 * k] = torch.tensor(word)
        mask[r, : 2 * k] = True
    return out, mask


def is_dyck(word: list[int] | Tensor) -> bool:
    """Whether a token word (ids of ``( ) [ ]``) is balanced with matching types (a stack)."""
    stack: list[int] = []
    for v in word.tolist() if isinstance(word, Tensor) else word:
        if v not in (0, 1, 2, 3):
            return False
        if v % 2 == 0:
            stack.append(v)
        elif not stack or stack.pop() != v - 1:
            return False
    return not stack


def valid_fraction(tokens: Tensor, mask: Tensor | None = None) -> float:
    """Fraction of rows of ``tokens`` (N, L) whose valid tokens form a Dyck word."""
    if tokens.shape[0] == 0:
        raise ValueError("valid_fraction needs at least one word, got none")
    rows = tokens.tolist()
    masks = mask.tolist() if mask is not None else [[True] * tokens.shape[1]] * len(rows)
    ok = sum(is_dyck([v for v, m in zip(r, mk) if m]) for r, mk in zip(rows, masks))
    return ok / len(rows)


def word_text(word: Tensor, mask: Tensor | None = None) -> str:
    """A bracket word as text, e.g. ``([])()``."""
    vals = word.tolist() if mask is None else [v for v, m in zip(word.tolist(), mask.tolist()) if m]
    return "".join(BRACKETS[v] if 0 <= v < 4 else "?" for v in vals)


def load_token_data(spec: str, *, n: int = 10_000, max_pairs: int = 8, seed: int = 0) -> TokenData:
    """Built-in token data by name (``digits-tokens``, or ``brackets``: ``n`` words drawn with ``seed``)."""
    if spec == "digits-tokens":
        return load_digit_tokens()
    if spec == "brackets":
        g = torch.Generator().manual_seed(seed)
        x, m = dyck_words(n, max_pairs, generator=g)
        return TokenData(x, 4, "brackets", mask=m)
    raise ValueError(f"token data must be one of {', '.join(TOKEN_DATASETS)}, got {spec!r}")
