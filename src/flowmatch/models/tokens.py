"""Posterior networks of discrete flow matching: ``model(x_t, t, cond=None, mask=None) -> logits``
``(B, L, V)`` for token sequences x_t ``(B, L)`` over S states (the data tokens and, for the masked
source, the mask token).

- :class:`ExactPosterior`: the true posterior p(x1^i | x_t) of a known categorical distribution
  over all V^L sequences, by Bayes' rule (for tests and as a reference sampler);
- :class:`TokenTransformer`: a small transformer with adaptive LayerNorm on the time (and label)
  embedding (the blocks of :mod:`flowmatch.models.sequence.transformer_block`), learned
  positions, a key-padding mask, a learned null label for classifier-free guidance.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.models.cond import CondEmbedding
from flowmatch.models.embeddings import SinusoidalTimeEmbedding
from flowmatch.models.sequence.transformer_block import TransformerBlock
from flowmatch.paths.mixture import MixturePath

__all__ = ["ExactPosterior", "TokenTransformer", "all_sequences"]


def all_sequences(vocab_size: int, length: int) -> Tensor:
    """Every sequence of ``length`` tokens over ``[0, vocab_size)``, (V^L, L) in lexicographic order
    (row r is r written in base V)."""
    rows = list(itertools.product(range(vocab_size), repeat=length))
    return torch.tensor(rows, dtype=torch.long)


class ExactPosterior(nn.Module):
    """The posterior marginals of a distribution q over all V^L sequences along a mixture path with
    an independent coupling (Bayes' rule):

        p(x1 | x_t) ∝ q(x1) prod_i [kappa_t delta_{x1^i}(x_t^i) + (1 - kappa_t) p0(x_t^i)],
        p_{1|t}(y | x_t)^i = sum_{x1: x1^i = y} p(x1 | x_t).

    Args:
        probs: q (V^L,), in the order of :func:`all_sequences`.
        path: the mixture path (its vocabulary V, source p0 and kappa_t).
        length: L.

    Returns log-probabilities (logits) ``(B, L, V)``, computed in float64.
    """

    seqs: Tensor
    probs: Tensor

    def __init__(self, probs: Tensor, path: MixturePath, length: int):
        super().__init__()
        self.path = path
        self.length = check_positive_int("length", length)
        seqs = all_sequences(path.vocab_size, self.length)
        if probs.shape != (seqs.shape[0],) or bool((probs < 0).any()) or float(probs.sum()) <= 0:
            raise ValueError(
                f"probs must be {seqs.shape[0]} non-negative weights (V^L) with a positive sum, got shape {tuple(probs.shape)}"
            )
        self.register_buffer("seqs", seqs, persistent=False)
        self.register_buffer("probs", (probs / probs.sum()).double(), persistent=False)
        self._dummy = nn.Parameter(torch.zeros(()), requires_grad=False)  # a device for callers

    def forward(self, x: Tensor, t: Tensor, cond: Any = None, mask: Tensor | None = None) -> Tensor:
        if bool((t == t[0]).all()) and self.path.num_states**self.length <= 4096:
            # one time for the batch (the sampler's case): the table of all S^L states, indexed
            states = all_sequences(self.path.num_states, self.length).to(x.device)
            table = self._log_posterior(states, t[:1].expand(states.shape[0]))
            powers = torch.tensor([self.path.num_states ** (self.length - 1 - i) for i in range(self.length)])
            return table[(x.long() * powers.to(x.device)).sum(1)]
        return self._log_posterior(x.long(), t)

    def _log_posterior(self, x: Tensor, t: Tensor) -> Tensor:
        k = self.path.scheduler.kappa(t.double())[:, None, None]  # (B, 1, 1)
        p0 = self.path.source_probs(x.device).double()
        same = (x[:, None, :] == self.seqs[None, :, :]).double()  # (B, N, L)
        lik = (k * same + (1 - k) * p0[x][:, None, :]).prod(-1)  # (B, N)
        w = lik * self.probs[None, :]
        w = w / w.sum(-1, keepdim=True)
        one_hot = nn.functional.one_hot(self.seqs, self.path.vocab_size).double()  # (N, L, V)
        post = torch.einsum("bn,nlv->blv", w, one_hot)
        return post.clamp_min(1e-300).log()


class TokenTransformer(nn.Module):
    """A posterior network over token sequences of at most ``length`` tokens.

    Args:
        num_states: S, the values of an input token (V + 1 with the mask token).
        vocab_size: V, the logits per position.
        length: the largest L (learned positional embeddings).
        dim: model width (a multiple of ``heads``); depth: transformer blocks; heads: attention heads.
        num_classes: classes of a label condition (0: unconditional); a learned null label row
            serves label -1 and ``cond=None`` (classifier-free guidance).

    Padding (``mask`` (B, L) bool, True = valid) is masked out of the attention's keys, so a valid
    token's logits do not depend on the padded ones.

    Example:
        >>> net = TokenTransformer(5, 4, 6, dim=32, depth=1)
        >>> net(torch.zeros(2, 6, dtype=torch.long), torch.rand(2)).shape
        torch.Size([2, 6, 4])
    """

    def __init__(
        self,
        num_states: int,
        vocab_size: int,
        length: int,
        *,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        num_classes: int = 0,
    ):
        super().__init__()
        self.num_states = check_positive_int("num_states", num_states)
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.length = check_positive_int("length", length)
        dim = check_positive_int("dim", dim)
        depth = check_positive_int("depth", depth)
        heads = check_positive_int("heads", heads)
        if dim % heads:
            raise ValueError(f"dim must be a multiple of heads ({heads}), got {dim}")
        self.tokens = nn.Embedding(self.num_states, dim)
        self.positions = nn.Parameter(torch.randn(self.length, dim) * 0.02)
        self.time = nn.Sequential(SinusoidalTimeEmbedding(64), nn.Linear(64, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.cond = CondEmbedding(num_classes, dim=dim) if num_classes > 0 else None
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, emb_dim=dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, self.vocab_size)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] > self.length:
            raise ValueError(f"x must be tokens (B, L) with L <= {self.length}, got shape {tuple(x.shape)}")
        b, n = x.shape
        h = self.tokens(x.long().clamp(0, self.num_states - 1)) + self.positions[:n]
        emb = self.time(t.to(h.dtype).reshape(b))
        if self.cond is not None:
            emb = emb + self.cond(cond, b)
        valid = torch.ones(b, n, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        for block in self.blocks:
            h = block(h, valid, emb)
        return self.out(self.norm(h))
