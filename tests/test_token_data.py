"""Built-in token data (issue 21): digits as 17 grey levels, Dyck words of two bracket types."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from scipy import stats

from flowmatch.data.images import load_digits
from flowmatch.data.tokens import dyck_words, is_dyck, load_digit_tokens, tokens_to_images, valid_fraction, word_text


def test_digit_tokens_are_the_digits_pixels_on_17_levels():
    d = load_digit_tokens()
    assert d.tokens.shape == (1797, 64) and d.vocab_size == 17
    assert int(d.tokens.min()) == 0 and int(d.tokens.max()) == 16
    torch.testing.assert_close(tokens_to_images(d.tokens), load_digits().images)


@pytest.mark.parametrize(
    "word, ok",
    [("", True), ("()", True), ("([])[]", True), ("(]", False), ("([)]", False), ("(()", False), ("())(", False)],
)
def test_is_dyck_checks_balance_and_types(word, ok):
    assert is_dyck(["()[]".index(c) for c in word]) is ok


def test_dyck_words_are_valid_and_uniform_over_shapes_and_types():
    x, m = dyck_words(6000, 3, generator=torch.Generator().manual_seed(0))
    assert valid_fraction(x, m) == 1.0
    assert bool((x[~m] == 0).all())
    lengths = m.sum(1)
    assert set(lengths.tolist()) == {2, 4, 6}
    words = [word_text(x[i], m[i]) for i in range(len(x)) if lengths[i] == 6]
    # 5 shapes (Catalan(3)) x 2^3 types = 40 words of 3 pairs, each equally likely
    counts = Counter(words)
    assert len(counts) == 40
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3
    # the checker can fail: a word with one bracket flipped is invalid
    bad = x[:5].clone()
    bad[:, 0] = 1
    assert valid_fraction(bad, m[:5]) == 0.0
