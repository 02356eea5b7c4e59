"""Mixture probability paths over tokens: discrete flow matching (Gat et al., "Discrete Flow
Matching", NeurIPS 2024, Sections 2-3; Campbell et al. 2024 for the masked source).

Token tensors are ``(B, L)`` int64 with data tokens in ``[0, V)``. Each token of a pair
(x0, x1) follows, independently of the others,

    p_t(x^i | x0, x1) = kappa_t delta_{x1^i}(x^i) + (1 - kappa_t) delta_{x0^i}(x^i),

a jump from x0^i to x1^i at a random time with CDF kappa_t (kappa_0 = 0, kappa_1 = 1, increasing).
The source p0 is either

- ``"mask"`` (absorbing): every x0^i is the extra mask token ``V``; states ``S = V + 1``;
- ``"uniform"``: x0^i uniform over ``[0, V)``; states ``S = V``.

With an independent coupling the marginal of one token given x1 is
p_t(y | x1) = kappa_t delta_{x1}(y) + (1 - kappa_t) p0(y) (:meth:`MixturePath.marginal`), so
P(x_t = x1) = kappa_t for the masked source and kappa_t + (1 - kappa_t) / V for the uniform one.

The probability velocity that generates the path, given the posterior p_{1|t}(y | x_t)
(Gat et al. 2024, Eq. 17 and Theorem 3):

    u_t(y | x_t) = kappa_t' / (1 - kappa_t) (p_{1|t}(y | x_t) - delta_{x_t}(y)),

per token (:meth:`MixturePath.jump_rate` is the factor kappa_t' / (1 - kappa_t)). Padded positions
(``mask`` ``(B, L)`` bool, True = valid token) never move: x_t keeps x1's value there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flowmatch._utils.validate import check_choice, check_positive_float, check_positive_int

__all__ = ["KappaScheduler", "PolynomialKappa", "MixturePath", "MixtureSample", "TOKEN_SOURCES", "check_tokens"]

TOKEN_SOURCES = ("mask", "uniform")


class KappaScheduler:
    """kappa_t: the probability that a token has jumped to its target by time t."""

    def kappa(self, t: Tensor) -> Tensor:
        """kappa_t, of t's shape."""
        raise NotImplementedError

    def d_kappa(self, t: Tensor) -> Tensor:
        """d kappa_t / dt, of t's shape."""
        raise NotImplementedError


class PolynomialKappa(KappaScheduler):
    """kappa_t = t^n, kappa_t' = n t^(n-1) (n = 1: the linear schedule; Gat et al. 2024 use n = 1
    to 3). Same form as :class:`flowmatch.paths.schedulers.PolynomialScheduler`'s alpha_t."""

    def __init__(self, n: float = 1.0):
        self.n = check_positive_float("kappa power n", n)

    def kappa(self, t: Tensor) -> Tensor:
        return t**self.n

    def d_kappa(self, t: Tensor) -> Tensor:
        if self.n == 1.0:
            return torch.ones_like(t)
        return self.n * t ** (self.n - 1)

    def __repr__(self) -> str:
        return f"PolynomialKappa(n={self.n:g})"


def check_tokens(name: str, x: Tensor, states: int) -> Tensor:
    """``x`` must be an integer ``(B, L)`` tensor with values in ``[0, states)``."""
    if not isinstance(x, Tensor) or x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        dtype = x.dtype if isinstance(x, Tensor) else None
        raise ValueError(f"{name} must be an int64 token tensor (B, L), got {shape} of dtype {dtype}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= states):
        raise ValueError(f"{name} tokens must lie in [0, {states}), got values in [{int(x.min())}, {int(x.max())}]")
    return x.long()


def check_token_mask(mask: Tensor | None, x: Tensor) -> Tensor | None:
    """A padding mask ``(B, L)`` (True/1 = valid) of x's shape, as bool; None stays None."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(x.shape):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"the token mask must have the tokens' shape {tuple(x.shape)}, got {shape}")
    return mask.to(device=x.device, dtype=torch.bool)


@dataclass
class MixtureSample:
    """A draw of the mixture path: t (B,), x_t (B, L), the pair (x0, x1), the valid tokens."""

    t: Tensor
    x_t: Tensor
    x0: Tensor
    x1: Tensor
    mask: Tensor | None = None


class MixturePath:
    """The factorised mixture path of Gat et al. (2024) over a vocabulary of ``vocab_size`` tokens.

    Args:
        vocab_size: V, the data tokens ``[0, V)``.
        source: ``"mask"`` (x0 = the mask token V everywhere) or ``"uniform"`` (x0 uniform on [0, V)).
        scheduler: kappa_t (default linear, :class:`PolynomialKappa` with n = 1).

    Example:
        >>> import torch
        >>> path = MixturePath(4, "mask")
        >>> x1 = torch.tensor([[0, 1, 2, 3]])
        >>> path.sample_source(x1, generator=torch.Generator().manual_seed(0))
        tensor([[4, 4, 4, 4]])
    """

    def __init__(self, vocab_size: int, source: str = "mask", scheduler: KappaScheduler | None = None):
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.source = check_choice("token source", source, TOKEN_SOURCES)
        if self.source == "uniform" and self.vocab_size < 2:
            raise ValueError(f"a uniform source needs vocab_size >= 2, got {vocab_size}")
        self.scheduler = PolynomialKappa(1.0) if scheduler is None else scheduler
        if not isinstance(self.scheduler, KappaScheduler):
            raise TypeError(f"scheduler must be a KappaScheduler, got {type(scheduler).__name__}")

    @property
    def mask_token(self) -> int | None:
        """The id of the mask token (V) for the masked source, else None."""
        return self.vocab_size if self.source == "mask" else None

    @property
    def num_states(self) -> int:
        """S: the values a token of x_t can take (V + 1 with the mask token)."""
        return self.vocab_size + (1 if self.source == "mask" else 0)

    def source_probs(self, device: torch.device | str = "cpu") -> Tensor:
        """p0 over the S states: delta_V (mask) or uniform on [0, V)."""
        p0 = torch.zeros(self.num_states, device=device)
        if self.source == "mask":
            p0[self.vocab_size] = 1.0
        else:
            p0[:] = 1.0 / self.vocab_size
        return p0

    def sample_source(
        self, like: Tensor, *, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """x0 ~ p0 of ``like``'s shape (B, L); padded positions (``mask`` False) copy ``like``."""
        if self.source == "mask":
            x0 = torch.full(like.shape, self.vocab_size, dtype=torch.long, device=like.device)
        else:
            x0 = torch.randint(0, self.vocab_size, like.shape, generator=generator, device=like.device)
        if mask is not None:
            x0 = torch.where(mask, x0, like.long())
        return x0

    def sample_like(self, x1: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The Trainer's source hook (:func:`flowmatch.training.prefetch.draw_step`): x0 shaped like x1."""
        return self.sample_source(x1, generator=generator)

    def __call__(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Not a batch source of its own: x0 is drawn shaped like each target batch (:meth:`sample_like`)."""
        raise TypeError("a MixturePath draws x0 shaped like a target batch: call sample_like(x1), not (n)")

    def sample(
        self, x0: Tensor, x1: Tensor, t: Tensor, *, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> MixtureSample:
        """x_t ~ p_t(. | x0, x1): each token is x1^i with probability kappa_t, else x0^i (one
        uniform draw per token from ``generator``); padded tokens are x1's."""
        x0 = check_tokens("x0", x0, self.num_states)
        x1 = check_tokens("x1", x1, self.vocab_size)
        if x0.shape != x1.shape:
            raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        if t.shape != (x1.shape[0],):
            raise ValueError(f"t must have shape ({x1.shape[0]},), got {tuple(t.shape)}")
        mask = check_token_mask(mask, x1)
        k = self.scheduler.kappa(t)[:, None]
        u = torch.rand(x1.shape, generator=generator, device=x1.device, dtype=k.dtype)
        x_t = torch.where(u < k, x1, x0)
        if mask is not None:
            x_t = torch.where(mask, x_t, x1)
        return MixtureSample(t, x_t, x0, x1, mask)

    def marginal(self, x1: Tensor, t: Tensor) -> Tensor:
        """p_t(. | x1) (B, L, S) of an independent coupling: kappa_t delta_{x1} + (1 - kappa_t) p0."""
        k = self.scheduler.kappa(t).to(torch.float64)[:, None, None]
        one_hot = torch.nn.functional.one_hot(x1.long(), self.num_states).to(torch.float64)
        return k * one_hot + (1 - k) * self.source_probs(x1.device).to(torch.float64)

    def jump_rate(self, t: Tensor) -> Tensor:
        """kappa_t' / (1 - kappa_t), the factor of the probability velocity (infinite at kappa_t = 1)."""
        return self.scheduler.d_kappa(t) / (1 - self.scheduler.kappa(t))

    def __repr__(self) -> str:
        return f"MixturePath(vocab_size={self.vocab_size}, source={self.source!r}, scheduler={self.scheduler!r})"
