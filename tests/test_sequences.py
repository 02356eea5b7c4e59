"""Variable-length sequence sets (issue 17.3): packed storage, padded/masked batches, the
length-bucketing batch source (determinism, distinct rows, uniform selection, less padding) and
the .npz folder loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from flowmatch.data.seqcond import SequenceCondition
from flowmatch.data.sequence_files import load_sequence_folder, save_sequence_folder
from flowmatch.data.sequences import SequenceBatches, SequenceSet, padding_fraction


def _lengths(n: int, lo: int, hi: int, seed: int) -> list[int]:
    return torch.randint(lo, hi + 1, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _raw(n: int = 12, *, channels: int = 3, feats: int = 2, lo: int = 3, hi: int = 17, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = _lengths(n, lo, hi, seed)
    return {
        "x": [torch.randn(channels, t, generator=g) for t in lengths],
        "tokens": [torch.randint(1, 40, (t,), generator=g) for t in lengths],
        "features": [torch.randn(feats, t, generator=g) for t in lengths],
        "speaker": [i % 5 for i in range(n)],
    }


def _set(**kw) -> SequenceSet:
    raw = _raw(**kw)
    return SequenceSet(raw.pop("x"), **raw)


def _assert_same_utterance(a, b) -> None:
    assert torch.equal(a.x, b.x) and a.x.dtype == torch.float32
    for name in ("tokens", "features"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None and vb is None) or torch.equal(va, vb)
    assert a.speaker == b.speaker


# ------------------------------------------------------------------ the set and its batches
def test_batch_holds_the_originals_exact_zeros_after_them_and_the_mask_of_the_lengths():
    raw = _raw()
    s = SequenceSet(raw["x"], tokens=raw["tokens"], features=raw["features"], speaker=raw["speaker"])
    assert len(s) == 12 and s.channels == 3 and s.feature_dim == 2
    assert s.lengths.tolist() == [x.shape[1] for x in raw["x"]]
    idx = [7, 0, 11, 3]
    b = s.batch(idx)
    lengths = [raw["x"][i].shape[1] for i in idx]
    T = max(lengths)
    assert b.x.shape == (4, 3, T) and b.mask.shape == (4, 1, T)
    assert b.mask.sum(dim=(1, 2)).tolist() == lengths
    assert isinstance(b.cond, SequenceCondition)
    assert b.cond.tokens.shape == (4, T) and b.cond.features.shape == (4, 2, T) and b.cond.tokens.dtype == torch.int64
    for row, (i, t) in enumerate(zip(idx, lengths)):
        assert torch.equal(b.x[row, :, :t], raw["x"][i])
        assert torch.equal(b.cond.tokens[row, :t], raw["tokens"][i])
        assert torch.equal(b.cond.features[row, :, :t], raw["features"][i])
        assert bool((b.x[row, :, t:] == 0).all()) and bool((b.cond.tokens[row, t:] == 0).all())
        assert bool((b.cond.features[row, :, t:] == 0).all()) and bool((b.mask[row, 0, t:] == 0).all())
        assert bool((b.mask[row, 0, :t] == 1).all())
    assert b.cond.speaker.tolist() == [raw["speaker"][i] for i in idx]


def test_a_set_without_fields_gives_batches_without_a_condition():
    s = SequenceSet(_raw()["x"])
    assert s.fields == () and s.batch([0, 1]).cond is None


def test_pad_multiple_rounds_the_frames_up_with_padding():
    s = _set()
    longest = int(s.lengths[:5].max())
    for m in (1, 4, 8, 64):
        b = s.batch(list(range(5)), pad_multiple=m)
        T = b.x.shape[-1]
        assert T % m == 0 and longest <= T < longest + m
        assert bool((b.x[..., longest:] == 0).all()) and bool((b.mask[..., longest:] == 0).all())
        assert b.mask.sum(dim=(1, 2)).tolist() == s.lengths[:5].tolist()
    src = SequenceBatches(s, pad_multiple=8)
    assert src(4, torch.Generator().manual_seed(0)).x.shape[-1] % 8 == 0


def test_subset_keeps_every_field_with_its_utterance():
    s = _set()
    perm = torch.randperm(len(s), generator=torch.Generator().manual_seed(3))
    train, test = s.subset(perm[:8]), s.subset(perm[8:])
    assert len(train) == 8 and len(test) == 4 and train.fields == s.fields
    for part, rows in ((train, perm[:8]), (test, perm[8:])):
        for j, i in enumerate(rows.tolist()):
            _assert_same_utterance(part[j], s[i])
        b, ref = part.batch([2, 0]), s.batch([int(rows[2]), int(rows[0])])
        assert torch.equal(b.x, ref.x) and torch.equal(b.cond.tokens, ref.cond.tokens)
        assert torch.equal(b.cond.speaker, ref.cond.speaker)


@pytest.mark.parametrize(
    "build, rule",
    [
        (lambda r: SequenceSet([]), "at least one utterance"),
        (
            lambda r: SequenceSet([r["x"][0], torch.zeros(3, 0)]),
            "sequence 1: x must have shape .C, T. with C >= 1 and T >= 1",
        ),
        (
            lambda r: SequenceSet([r["x"][0], torch.zeros(4, 5)]),
            "sequence 1: every utterance must have the same channels C = 3",
        ),
        (lambda r: SequenceSet([torch.zeros(5)]), r"sequence 0: x must have shape \(C, T\)"),
        (
            lambda r: SequenceSet(r["x"][:2], tokens=[r["tokens"][0], r["tokens"][0]]),
            "sequence 1: tokens must have one entry per frame",
        ),
        (
            lambda r: SequenceSet(r["x"][:1], tokens=[torch.zeros(r["x"][0].shape[1], dtype=torch.long)]),
            "tokens must be >= 1",
        ),
        (lambda r: SequenceSet(r["x"][:1], tokens=[r["tokens"][0].float()]), "tokens must be integers"),
        (lambda r: SequenceSet(r["x"][:2], features=[r["features"][0], r["features"][1][:1]]), "same F >= 1 features"),
        (lambda r: SequenceSet([r["x"][0], r["x"][1].clone().fill_(float("nan"))]), "sequence 1: x must be finite"),
        (lambda r: SequenceSet([np.full((2, 3), 1e300)]), "sequence 0: x must be finite .after conversion to float32"),
        (lambda r: SequenceSet(r["x"][:2], speaker=[0, -1]), "sequence 1: speaker must be >= 0"),
        (lambda r: SequenceSet(r["x"][:2], speaker=[0]), "speaker must be 2 integers"),
        (lambda r: SequenceSet(r["x"][:2], tokens=r["tokens"][:1]), "tokens must have one entry per utterance"),
    ],
)
def test_bad_sets_raise_one_line_errors_naming_the_utterance_and_rule(build, rule):
    with pytest.raises(ValueError, match=rule) as info:
        build(_raw())
    assert "\n" not in str(info.value)


def test_bad_indices_and_batch_sizes_are_refused():
    s = _set()
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 12\)"):
        s.batch([0, 12])
    with pytest.raises(ValueError, match="non-empty"):
        s.subset([])
    with pytest.raises(ValueError, match="must not exceed the sequences set of 12 utterances"):
        SequenceBatches(s)(13)
    with pytest.raises(ValueError, match="batch size must be a positive integer"):
        SequenceBatches(s)(0)


# ------------------------------------------------------------------ the batch source
@pytest.mark.parametrize("bucket", [True, False])
def test_same_seed_same_batch_other_seed_other_batch_rows_distinct(bucket):
    s = _set(n=300)
    src = SequenceBatches(s, bucket=bucket)

    def draw(seed):
        return src(16, torch.Generator().manual_seed(seed))

    a, b, c = draw(5), draw(5), draw(6)
    assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask)
    assert torch.equal(a.cond.tokens, b.cond.tokens) and torch.equal(a.cond.speaker, b.cond.speaker)
    assert a.x.shape != c.x.shape or not torch.equal(a.x, c.x)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx = src.indices(16, g)
        assert idx.shape == (16,) and len(set(idx.tolist())) == 16
    assert len(set(src.indices(300, g).tolist())) == 300  # the whole set: a window of all N


def _chi2_pvalue(counts: np.ndarray, n: int) -> float:
    """p-value of the draw counts of N utterances over batches of n against uniform selection.

    Each count is binomial (draws, n / N), of variance (1 - n / N) times its mean, so Pearson's
    statistic is divided by 1 - n / N (without it the test is conservative for n / N not small).
    """
    expected = counts.sum() / counts.size
    stat = float(((counts - expected) ** 2 / expected).sum()) / (1 - n / counts.size)
    return float(chi2.sf(stat, counts.size - 1))


@pytest.mark.parametrize("bucket", [True, False])
def test_every_utterance_is_drawn_with_uniform_frequency(bucket):
    """Chi-squared tests of the draw counts against uniform selection (N = 200 utterances of
    lengths 60..250, n = 16, 4000 draws, generator seed 0).

    The first row of each draw is one independent uniform pick per draw, so its counts are exactly
    multinomial: measured p = 0.50 bucketed, 0.77 uniform (over seeds 0..99 the test rejects at
    0.05 in 3% and 6% of them: calibrated). The counts of all rows have binomial marginals of mean
    4000 n / N, but in a bucketed draw neighbours on the length circle come together, which
    widens the statistic's spread (rejections at 0.01: 5% of seeds bucketed, 1% uniform); seed 0:
    p = 0.12 bucketed, 0.83 uniform. A naive window (start uniform in [0, N - w] of the sorted
    order), which starves the shortest and longest utterances, gives p < 1e-6 on the first rows."""
    N, n, draws = 200, 16, 4000
    s = SequenceSet([torch.zeros(1, t) for t in _lengths(N, 60, 250, seed=1)])
    src = SequenceBatches(s, bucket=bucket)
    g = torch.Generator().manual_seed(0)
    drawn = torch.stack([src.indices(n, g) for _ in range(draws)])
    p_first = _chi2_pvalue(np.bincount(drawn[:, 0].numpy(), minlength=N), 1)
    p_all = _chi2_pvalue(np.bincount(drawn.flatten().numpy(), minlength=N), n)
    assert p_first > 0.01 and p_all > 0.01, f"not uniform (bucket={bucket}): p = {p_first:.3g}, {p_all:.3g}"
    if bucket:
        order = torch.sort(s.lengths, stable=True).indices
        w = src.window(n)
        naive = [
            int(order[int(torch.randint(N - w + 1, (1,), generator=g)) + int(torch.randint(w, (1,), generator=g))])
            for _ in range(draws)
        ]
        assert _chi2_pvalue(np.bincount(np.array(naive), minlength=N), 1) < 1e-6


def test_bucketing_cuts_the_padding_fraction_on_lengths_uniform_60_to_250():
    """Measured (N = 2000, n = 32, 200 draws): 0.37 of the frames are padding uniformly, 0.073
    bucketed (bucket_factor 4), a factor of 5."""
    s = SequenceSet([torch.zeros(1, t) for t in _lengths(2000, 60, 250, seed=2)])
    fractions = {}
    for bucket in (False, True):
        src, g = SequenceBatches(s, bucket=bucket), torch.Generator().manual_seed(0)
        fractions[bucket] = float(np.mean([padding_fraction(src(32, g).mask) for _ in range(200)]))
    assert 0.3 < fractions[False] < 0.45
    assert fractions[True] < 0.1 and fractions[False] > 4 * fractions[True], fractions


# ------------------------------------------------------------------ the .npz folder
def test_npz_folder_round_trip_is_exact(tmp_path):
    s = _set()
    files = save_sequence_folder(s, tmp_path / "set")
    assert [f.name for f in files][:2] == ["000000.npz", "000001.npz"]
    back = load_sequence_folder(tmp_path / "set")
    assert len(back) == len(s) and back.fields == s.fields and back.names == tuple(str(f) for f in files)
    for i in range(len(s)):
        _assert_same_utterance(back[i], s[i])
    with pytest.raises(ValueError, match="must not already hold .npz files"):
        save_sequence_folder(s, tmp_path / "set")
    bare = SequenceSet(_raw()["x"][:3])
    save_sequence_folder(bare, tmp_path / "bare")
    assert load_sequence_folder(tmp_path / "bare").fields == ()


def test_time_first_files_load_with_layout_tc_only(tmp_path):
    raw = _raw(n=3)
    for i in range(3):
        np.savez(tmp_path / f"u{i}.npz", x=raw["x"][i].numpy().T, features=raw["features"][i].numpy().T)
    s = load_sequence_folder(tmp_path, layout="TC")
    for i in range(3):
        assert torch.equal(s[i].x, raw["x"][i]) and torch.equal(s[i].features, raw["features"][i])
    with pytest.raises(ValueError, match="same channels"):  # the layout is never guessed
        load_sequence_folder(tmp_path)
    with pytest.raises(ValueError, match="layout must be one of CT, TC"):
        load_sequence_folder(tmp_path, layout="tc")


def test_files_load_in_name_order_and_other_files_are_ignored(tmp_path):
    for name, t in (("b.npz", 5), ("a.npz", 3), ("c.npz", 4)):
        np.savez(tmp_path / name, x=np.zeros((2, t), dtype=np.float32))
    (tmp_path / "README.txt").write_text("not data")
    s = load_sequence_folder(tmp_path)
    assert s.lengths.tolist() == [3, 5, 4] and [n.rsplit("/", 1)[-1] for n in s.names] == ["a.npz", "b.npz", "c.npz"]


_GOOD = {"x": np.zeros((2, 4), np.float32), "tokens": np.ones(4, np.int64), "speaker": np.int64(1)}


@pytest.mark.parametrize(
    "bad, rule",
    [
        ({"tokens": np.ones(4, np.int64), "speaker": np.int64(1)}, "must hold an array 'x'"),
        ({**_GOOD, "tokens": np.ones(3, np.int64)}, "tokens must have one entry per frame of x .4., got 3"),
        ({"x": _GOOD["x"], "tokens": _GOOD["tokens"]}, r"holds the arrays \['tokens', 'x'\] but .* holds"),
        ({**_GOOD, "x": np.full((2, 4), np.inf, np.float32)}, "x must be finite"),
        ({**_GOOD, "x": np.zeros((3, 4), np.float32)}, "same channels C = 2"),
        (
            {**_GOOD, "feature": np.zeros((1, 4))},
            "may hold only the arrays x, tokens, features, speaker, got 'feature'",
        ),
        ({**_GOOD, "speaker": np.array([1, 2])}, r"speaker must have shape \(\) \(a scalar\)"),
        ({**_GOOD, "speaker": np.float64(1.0)}, "speaker must be integers"),
        ({**_GOOD, "tokens": np.ones(4)}, "tokens must be integers"),
        ({**_GOOD, "x": np.zeros(4)}, r"x must have shape \(C, T\)"),
        ({**_GOOD, "x": np.array([["a"] * 4] * 2)}, "must hold real numbers"),
    ],
)
def test_bad_files_raise_one_line_errors_naming_the_file_and_rule(tmp_path, bad, rule):
    np.savez(tmp_path / "a.npz", **_GOOD)
    np.savez(tmp_path / "b.npz", **bad)
    with pytest.raises(ValueError, match=rule) as info:
        load_sequence_folder(tmp_path)
    assert str(tmp_path / "b.npz") in str(info.value) and "\n" not in str(info.value)


def test_broken_and_missing_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="must be an existing directory"):
        load_sequence_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="must hold at least one .npz file"):
        load_sequence_folder(tmp_path)
    (tmp_path / "a.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=f"malformed npz file '{tmp_path / 'a.npz'}'"):
        load_sequence_folder(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(ValueError, match="must be an .npz archive of arrays"):
        load_sequence_folder(tmp_path)
