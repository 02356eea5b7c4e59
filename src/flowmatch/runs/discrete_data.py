"""The data, path, network and samples of a token run (``--target digits-tokens`` or
``brackets``): used by :class:`flowmatch.runs.discrete.DiscreteKind` and ``flowmatch bench discrete``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch.data.batches import SequenceBatch
from flowmatch.data.tokens import load_token_data
from flowmatch.models.tokens import TokenTransformer
from flowmatch.paths.mixture import MixturePath, PolynomialKappa
from flowmatch.runs.config import RunConfig
from flowmatch.runs.data import DATA_SEED_OFFSET
from flowmatch.sampling.discrete import DiscreteSampleResult, sample_discrete

__all__ = ["TokenRunData", "TokenBatches", "build_token_data", "run_mixture_path", "build_token_model", "sample_tokens"]

#: pairs of the longest bracket word (length 2 * 8 = 16 tokens)
BRACKET_MAX_PAIRS = 8


@dataclass
class TokenRunData:
    """Train/test token sequences (N, L) with their valid tokens (None: all valid) and labels."""

    train: Tensor
    test: Tensor
    vocab_size: int
    name: str
    train_mask: Tensor | None = None
    test_mask: Tensor | None = None
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    classes: tuple[str, ...] = ()

    @property
    def length(self) -> int:
        return int(self.train.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class TokenBatches:
    """Batches of ``n`` distinct training rows: tokens, ``(tokens, labels)``, or a
    :class:`~flowmatch.data.batches.SequenceBatch` of tokens (B, L) with their mask (B, L) for
    variable lengths."""

    def __init__(self, tokens: Tensor, mask: Tensor | None = None, cond: Tensor | None = None):
        self.tokens, self.mask, self.cond = tokens, mask, cond

    def check_batch_size(self, n: int) -> None:
        if n > self.tokens.shape[0]:
            raise ValueError(f"batch size must not exceed the {self.tokens.shape[0]} training sequences, got {n}")

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Any:
        self.check_batch_size(n)
        idx = torch.randperm(self.tokens.shape[0], generator=generator, device=self.tokens.device)[:n]
        if self.mask is not None:
            return SequenceBatch(self.tokens[idx], self.mask[idx], None)
        if self.cond is not None:
            return self.tokens[idx], self.cond[idx]
        return self.tokens[idx]


def build_token_data(cfg: RunConfig) -> TokenRunData:
    """digits-tokens: the split of a continuous ``digits`` run of the same seed (the image split of
    :func:`flowmatch.data.images.image_split`, pixels back to their 17 levels); brackets:
    ``n_train`` + ``n_test`` fresh Dyck words. Deterministic in ``cfg.seed``."""
    g = torch.Generator().manual_seed(cfg.seed + DATA_SEED_OFFSET)
    if cfg.target == "digits-tokens":
        from flowmatch.data.images import image_split

        sp = image_split("digits", n_test=cfg.n_test, generator=g)

        def to_tokens(x: Tensor) -> Tensor:
            return ((x + 1.0) * 8.0).round().long().reshape(x.shape[0], -1)

        return TokenRunData(
            to_tokens(sp.train),
            to_tokens(sp.test),
            17,
            cfg.target,
            train_labels=sp.train_labels,
            test_labels=sp.test_labels,
            classes=tuple(sp.classes),
        )
    data = load_token_data(
        cfg.target, n=cfg.n_train + cfg.n_test, max_pairs=BRACKET_MAX_PAIRS, seed=cfg.seed + DATA_SEED_OFFSET
    )
    m = data.mask
    n = cfg.n_train
    return TokenRunData(
        data.tokens[:n],
        data.tokens[n:],
        data.vocab_size,
        cfg.target,
        None if m is None else m[:n],
        None if m is None else m[n:],
    )


def run_mixture_path(cfg: RunConfig, data: TokenRunData) -> MixturePath:
    """The mixture path of a token run: its vocabulary, ``token_source`` and kappa_t = t^kappa_power."""
    return MixturePath(data.vocab_size, cfg.token_source, PolynomialKappa(cfg.kappa_power))


def build_token_model(cfg: RunConfig, data: TokenRunData) -> nn.Module:
    """The run's :class:`~flowmatch.models.tokens.TokenTransformer` (width ``hidden``, ``depth``
    blocks, 4 heads), class-conditional for ``cond = label``; initialised from ``cfg.seed``."""
    path = run_mixture_path(cfg, data)
    k = data.num_classes if cfg.cond == "label" else 0
    heads = 4 if cfg.hidden % 4 == 0 else 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return TokenTransformer(
            path.num_states, data.vocab_size, data.length, dim=cfg.hidden, depth=cfg.depth, heads=heads, num_classes=k
        )


def sample_tokens(
    model: nn.Module,
    cfg: RunConfig,
    data: TokenRunData,
    n: int,
    *,
    steps: int | None = None,
    cond: Tensor | None = None,
    mask: Tensor | None = None,
    guidance: float | None = None,
    seed: int = 0,
    sampler: Callable[..., Tensor] | None = None,
) -> DiscreteSampleResult:
    """``n`` samples of the run: x0 ~ the run's source, the CTMC sampler in ``steps`` steps
    (default ``eval_steps``) with the run's corrector; bracket runs take the lengths ``mask`` (by
    default those of the first ``n`` test words, cycled). ``sampler(x0, steps, cond, mask) -> x``
    replaces the CTMC sampler (``flowmatch bench discrete`` passes Meta's)."""
    device = next(model.parameters()).device
    path = run_mixture_path(cfg, data)
    g = torch.Generator(device=device).manual_seed(seed)
    if mask is None and data.test_mask is not None:
        reps = -(-n // data.test_mask.shape[0])
        mask = data.test_mask.repeat(reps, 1)[:n]
    like = torch.zeros(n, data.length, dtype=torch.long, device=device)
    x0 = path.sample_source(like, generator=g)
    if mask is not None:
        mask = mask.to(device)
        x0 = torch.where(mask, x0, like)
    model.eval()
    if sampler is not None:
        steps = steps or cfg.eval_steps
        with torch.no_grad():
            return DiscreteSampleResult(sampler(x0, steps, None if cond is None else cond.to(device), mask), steps)
    return sample_discrete(
        model,
        path,
        x0,
        steps=steps or cfg.eval_steps,
        cond=None if cond is None else cond.to(device),
        mask=mask,
        guidance=guidance if cond is not None else None,
        corrector=cfg.corrector,
        generator=g,
    )
