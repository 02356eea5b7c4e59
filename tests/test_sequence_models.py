"""The sequence backbones (UNet1D, SequenceTransformer) and their condition encoder: padding
invariance, masked outputs and gradients, odd lengths through the down/up-sampling, the condition
and its null, receptive fields, a one-batch overfit, and one-line errors for bad arguments."""

from __future__ import annotations

import pytest
import torch

from flowmatch.data.masks import lengths_to_mask, masked_mean
from flowmatch.data.seqcond import SequenceCondition
from flowmatch.models import SequenceConditionEncoder, SequenceTransformer, UNet1D

C = 6
TOKENS, SPEAKERS = 10, 4
COND = dict(num_tokens=TOKENS, num_speakers=SPEAKERS, feature_dim=3, context_channels=C, cond_dim=8)

#: tiny models of both kinds, every condition field configured
BUILD = {
    "unet1d": lambda **kw: UNet1D(C, channels=(16, 16, 24), heads=2, time_dim=16, **kw),
    "transformer": lambda **kw: SequenceTransformer(C, dim=32, depth=4, heads=2, ff_mult=2, time_dim=16, **kw),
}

#: how far valid frames may move when the padding changes: the attention's fused kernels reduce
#: over the padded number of keys, grouping the zero-weight padded keys differently (see
#: flowmatch.models.sequence.attention), so agreement is to float32 rounding, not bit for bit
PAD_ATOL = 2e-6


def _model(kind: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return BUILD[kind](**{**COND, **kw}).eval()


def _batch(lengths: list[int], frames: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, SequenceCondition]:
    """x, mask and a full condition for utterances of ``lengths``, zero-padded to ``frames``; the
    same seed gives the same utterances whatever ``frames`` is."""
    g = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    b = len(lengths)
    mask = lengths_to_mask(torch.tensor(lengths), frames)
    x = torch.randn(b, C, longest, generator=g)
    tokens = torch.randint(1, TOKENS, (b, longest), generator=g)
    feats = torch.randn(b, 3, longest, generator=g)
    span = (torch.rand(b, 1, longest, generator=g) < 0.5).float()
    pad = frames - longest

    def fit(v: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(v, (0, pad))
        return padded * (mask[:, 0] if v.dim() == 2 else mask)

    x = fit(x)
    cond = SequenceCondition(
        tokens=fit(tokens).long(),
        features=fit(feats),
        speaker=torch.randint(0, SPEAKERS, (b,), generator=g),
        context=x * (1 - fit(span)),
    )
    return x, mask, cond


def _row(cond: SequenceCondition, i: int, n: int) -> SequenceCondition:
    """Row i of ``cond``, cut to its first n frames."""
    return SequenceCondition(**{k: v[[i]] if k == "speaker" else v[[i]][..., :n] for k, v in vars(cond).items()})


T_FIXED = torch.tensor([0.3, 0.6, 0.9])
KINDS = ["unet1d", "transformer"]


# ------------------------------------------------------------------ (a) padding invariance
@pytest.mark.parametrize("kind", KINDS)
def test_valid_frames_do_not_depend_on_the_padding_length(kind):
    net = _model(kind)
    lengths = [17, 23, 31]
    x31, m31, c31 = _batch(lengths, 31)
    x40, m40, c40 = _batch(lengths, 40)
    with torch.no_grad():
        a, b = net(x31, T_FIXED, c31, m31), net(x40, T_FIXED, c40, m40)[:, :, :31]
    assert torch.allclose(a, b, rtol=0, atol=PAD_ATOL), (a - b).abs().max()
    # and each utterance alone (no padding at all) gives its frames of the batch
    for i, n in enumerate(lengths):
        with torch.no_grad():
            alone = net(x31[i : i + 1, :, :n], T_FIXED[i : i + 1], _row(c31, i, n), m31[i : i + 1, :, :n])
        assert torch.allclose(alone[0], a[i, :, :n], rtol=0, atol=PAD_ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_values_in_the_padded_frames_change_nothing(kind):
    net = _model(kind)
    x, mask, cond = _batch([17, 23, 31], 40)
    pad = 1 - mask
    junk = torch.randn_like(x) * 100
    dirty = SequenceCondition(
        tokens=torch.where(pad[:, 0] > 0, torch.full_like(cond.tokens, 7), cond.tokens),
        features=cond.features + 50 * pad,
        speaker=cond.speaker,
        context=cond.context - 30 * pad,
    )
    with torch.no_grad():
        clean, noisy = net(x, T_FIXED, cond, mask), net(x + junk * pad, T_FIXED, dirty, mask)
    assert torch.equal(clean, noisy)  # same shapes: padded values are multiplied by 0 before any use


# ------------------------------------------------------------------ (b), (c) masked outputs and gradients
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_are_exactly_zero_at_padded_frames_and_mask_none_is_all_valid(kind):
    net = _model(kind)
    x, mask, cond = _batch([5, 9, 12], 12)
    with torch.no_grad():
        out = net(x, T_FIXED, cond, mask)
        assert out.shape == x.shape
        assert bool((out * (1 - mask) == 0).all()) and bool((out[mask.expand_as(out) == 0] == 0).all())
        full = torch.ones_like(mask)
        assert torch.equal(net(x, T_FIXED, cond, None), net(x, T_FIXED, cond, full))


@pytest.mark.parametrize("kind", KINDS)
def test_a_masked_loss_has_exactly_zero_gradient_at_padded_input_frames(kind):
    net = _model(kind).train()
    x, mask, cond = _batch([4, 11, 16], 19)
    x = (x + torch.randn_like(x) * (1 - mask)).requires_grad_(True)  # non-zero padding too
    target = torch.randn_like(x)
    loss = masked_mean((net(x, T_FIXED, cond, mask) - target) ** 2, mask)
    loss.backward()
    grad = x.grad
    assert grad is not None
    padded = (mask == 0).expand_as(grad)
    assert bool((grad[padded] == 0).all())
    assert bool((grad[~padded] != 0).any())


# ------------------------------------------------------------------ (d) odd lengths through the U-Net
@pytest.mark.parametrize("kind", KINDS)
def test_odd_and_tiny_lengths_go_through_down_and_up_sampling(kind):
    net = _model(kind)  # the UNet has 3 levels: lengths are padded to a multiple of 4 inside
    lengths = [1, 2, 3, 5, 7]
    for frames in (7, 9, 16):
        x, mask, cond = _batch(lengths, frames)
        with torch.no_grad():
            out = net(x, torch.full((5,), 0.5), cond, mask)
        assert out.shape == (5, C, frames) and bool(torch.isfinite(out).all())
        if frames == 7:
            ref = out
        else:
            assert torch.allclose(out[:, :, :7], ref, rtol=0, atol=PAD_ATOL)
    for n in lengths:  # one utterance, no padding
        x, mask, cond = _batch([n], n)
        with torch.no_grad():
            assert net(x, torch.tensor([0.5]), cond, mask).shape == (1, C, n)


# ------------------------------------------------------------------ (e) the condition and its null
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("field", ["tokens", "features", "speaker", "context"])
def test_every_condition_field_changes_the_valid_outputs(kind, field):
    net = _model(kind)
    x, mask, cond = _batch([9, 14, 14], 14)
    v = getattr(cond, field)
    if field == "tokens":
        other = (v % (TOKENS - 1)) + 1
        other = other * (mask[:, 0] > 0)
    elif field == "speaker":
        other = (v + 1) % SPEAKERS
    else:
        other = (v + torch.randn_like(v)) * mask
    changed = SequenceCondition(**{**vars(cond), field: other})
    with torch.no_grad():
        a, b = net(x, T_FIXED, cond, mask), net(x, T_FIXED, changed, mask)
    for i in range(3):
        assert not torch.allclose(a[i], b[i], atol=1e-5), f"row {i}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_null_row_equals_cond_none_for_that_row(kind):
    net = _model(kind)
    x, mask, cond = _batch([9, 14, 11], 14)
    dropped = cond.where_null(torch.tensor([False, True, False]))
    with torch.no_grad():
        some_null = net(x, T_FIXED, dropped, mask)
        none = net(x, T_FIXED, None, mask)
        full = net(x, T_FIXED, cond, mask)
        absent = net(x, T_FIXED, SequenceCondition(tokens=dropped.tokens), mask)  # absent fields read as null
    # bit for bit: the rows of a batch are computed independently, with the same shapes
    assert torch.equal(some_null[1], none[1])
    assert torch.equal(some_null[0], full[0])
    assert not torch.allclose(some_null[0], none[0], atol=1e-4)
    assert torch.equal(absent[1], none[1])


def test_the_encoder_writes_the_null_and_padding_rows_as_documented():
    torch.manual_seed(0)
    enc = SequenceConditionEncoder(TOKENS, SPEAKERS, 3, C, dim=5)
    assert enc.out_dim == 3 * 5 + C + 1
    x, mask, cond = _batch([3, 6], 6)
    out = enc(cond, x, mask)
    assert out.shape == (2, enc.out_dim, 6)
    assert bool((out * (1 - mask) == 0).all())
    none = enc(None, x)
    null = enc(cond.null_like(), x)
    assert torch.equal(none, null)
    assert bool((none[:, -1] == 1).all())  # the no-context flag
    assert bool((out[:, -1] * mask[:, 0] == 0).all())
    pad_ids = SequenceCondition(tokens=torch.zeros(2, 6, dtype=torch.long))
    assert bool((enc(pad_ids, x)[:, :5] == 0).all())  # id 0: the padding id, a zero vector
    assert SequenceConditionEncoder().out_dim == 0
    assert SequenceConditionEncoder()(None, x).shape == (2, 0, 6)


# ------------------------------------------------------------------ (f) receptive fields
@pytest.mark.parametrize("kind", KINDS)
def test_attention_spans_the_whole_sequence(kind):
    net = _model(kind)
    x, mask, cond = _batch([60, 60], 60)
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    with torch.no_grad():
        a, b = net(x, T_FIXED[:2], cond, mask), net(x2, T_FIXED[:2], cond, mask)
    assert not torch.allclose(a[:, :, -1], b[:, :, -1], atol=1e-6)


def test_a_unet_without_attention_has_a_local_receptive_field():
    torch.manual_seed(0)
    net = UNet1D(C, channels=(8, 8, 8), attention_blocks=0, mid_blocks=0, time_dim=16).eval()
    x = torch.randn(1, C, 200)
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    t = torch.tensor([0.5])
    with torch.no_grad():
        d = (net(x, t) - net(x2, t)).abs()[0].amax(dim=0)
    changed = torch.nonzero(d > 0).flatten()
    assert int(changed.min()) == 0 and 10 < int(changed.max()) < 100, changed.max()
    assert bool((d[150:] == 0).all())


# ------------------------------------------------------------------ (g) a tiny model overfits one batch
@pytest.mark.parametrize("kind", KINDS)
def test_a_tiny_model_overfits_one_batch(kind):
    net = _model(kind).train()
    x, mask, cond = _batch([12, 20, 17], 20)
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) * mask
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = masked_mean((net(x, T_FIXED, cond, mask) - target) ** 2, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


# ------------------------------------------------------------------ (h) bad arguments
def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: UNet1D(0), r"in_channels must be a positive integer, got 0"),
        (lambda: UNet1D(C, channels=()), r"channels must hold at least one level"),
        (lambda: UNet1D(C, channels=(16, -2)), r"channels entry must be a positive integer, got -2"),
        (lambda: UNet1D(C, channels=(16, 18), heads=4), r"multiple of heads \(4\), got 18"),
        (lambda: UNet1D(C, kernel=4), r"kernel must be odd.*got 4"),
        (lambda: UNet1D(C, time_dim=15), r"time_dim must be even.*got 15"),
        (lambda: UNet1D(C, dropout=1.0), r"dropout must lie in \[0, 1\), got 1.0"),
        (lambda: UNet1D(C, num_tokens=-1), r"num_tokens must be an integer >= 0, got -1"),
        (lambda: SequenceTransformer(C, dim=30, heads=4), r"multiple of heads \(4\).*got dim=30"),
        (lambda: SequenceTransformer(C, depth=0), r"depth must be a positive integer, got 0"),
        (lambda: SequenceConditionEncoder(context_channels=2.5), r"context_channels must be an integer >= 0"),
    ],
)
def test_bad_constructor_arguments_give_one_line_value_errors(build, match):
    with pytest.raises(ValueError, match=match) as e:
        build()
    _one_line(e)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_calls_give_one_line_errors(kind):
    net = _model(kind)
    x, mask, cond = _batch([5, 8], 8)
    t = torch.rand(2)
    cases = [
        (lambda: net(x[:, :3], t, cond, mask), ValueError, rf"expects x of shape \(B, {C}, T\), got \(2, 3, 8\)"),
        (lambda: net(x, torch.rand(3), cond, mask), ValueError, r"t of shape \(2,\).*got \(3,\)"),
        (lambda: net(x, t, cond, mask.expand(-1, C, -1)), ValueError, r"per-frame mask of shape \(2, 1, 8\)"),
        (lambda: net(x, t, cond, mask * 0), ValueError, r"at least one valid element"),
        (lambda: net(x, t, cond, mask[..., :5]), ValueError, r"dimension 2 must be 1 or 8"),
        (lambda: net(x, t, torch.zeros(2), mask), TypeError, r"SequenceCondition or None, got Tensor"),
        (lambda: net(x, t, cond[[0]], mask), ValueError, r"one row per sequence \(2\), got 1 rows"),
        (
            lambda: net(x, t, SequenceCondition(tokens=torch.full((2, 8), TOKENS)), mask),
            ValueError,
            rf"tokens must lie in \[0, {TOKENS}\).*got {TOKENS}",
        ),
        (
            lambda: net(x, t, SequenceCondition(speaker=torch.tensor([0, -2])), mask),
            ValueError,
            r"speaker must lie in .*got -2",
        ),
        (
            lambda: net(x, t, SequenceCondition(context=x[:, :, :5]), mask),
            ValueError,
            r"context must have x's 8 frames, got shape \(2, 6, 5\)",
        ),
        (
            lambda: net(x, t, SequenceCondition(features=torch.zeros(2, 4, 8)), mask),
            ValueError,
            r"features must have 3 channels, got shape \(2, 4, 8\)",
        ),
        (
            lambda: net(x, t, SequenceCondition(context=torch.where(x > 0, float("nan"), x)), mask),
            ValueError,
            r"NaN in every channel \(null\) or in none",
        ),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match) as e:
            call()
        _one_line(e)
    plain = BUILD[kind]()
    with pytest.raises(ValueError, match=r"fields this model was not built for: speaker \(configured: none\)") as e:
        plain(x, t, SequenceCondition(speaker=torch.tensor([0, 1])), mask)
    _one_line(e)
