"""Masks in the core (issue 17, item 1): padded sequences (B, C, T) with mask (B, 1, T) through the
matcher, the couplings, the samplers and infilling. Padding invariance is tested, not hoped for."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from flowmatch.couplings import ExactOT, Independent, Sinkhorn
from flowmatch.data.batches import NoiseLike, SequenceBatch
from flowmatch.data.masks import check_mask, lengths_to_mask, masked_mean
from flowmatch.data.seqcond import SequenceCondition
from flowmatch.models.contract import ModelContractError
from flowmatch.objectives import methods
from flowmatch.objectives.infill import InfillingMatcher, draw_spans
from flowmatch.paths import LinearPath
from flowmatch.sampling.infill import infill
from flowmatch.sampling.ode import sample
from flowmatch.sampling.sde import sample_sde
from flowmatch.training.trainer import Trainer, TrainerConfig

C = 3


class FrameNet(nn.Module):
    """A per-element network (elementwise operations only): its output at an element depends on
    that element (and the context there) alone, in arithmetic that does not depend on the length
    of the batch, so padding invariance to the last bit is a property of the loss and the samplers,
    not of the model (a convolution's kernel choice may change with T: tests/test_sequence_models.py)."""

    def __init__(self, channels: int = C, context: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(1, channels, 1, generator=g))
        self.b = nn.Parameter(torch.randn(1, channels, 1, generator=g))
        self.c = nn.Parameter(torch.randn(1, channels, 1, generator=g))
        self.d = nn.Parameter(torch.randn(1, channels, 1, generator=g))
        self.context = context

    def forward(self, x, t, cond=None, mask=None):
        h = self.a * x + self.b * t.reshape(-1, 1, 1)
        if self.context and cond is not None and cond.context is not None:
            h = h + self.d * torch.nan_to_num(cond.context)
        out = torch.tanh(h) * self.c + 1.0  # nonzero everywhere, also in the padding
        return out if mask is None else out * mask


def _utterances(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(C, n, generator=g) + 2 for n in lengths]


def _pad(seqs, T, fill=0.0):
    x = torch.full((len(seqs), C, T), fill)
    for i, s in enumerate(seqs):
        x[i, :, : s.shape[1]] = s
    lengths = torch.tensor([s.shape[1] for s in seqs])
    return x, lengths_to_mask(lengths, T)


LENGTHS = [5, 9, 3, 7]


@pytest.mark.parametrize("method", ["ot-cfm", "i-cfm", "fm", "cfm-consistency"])
def test_the_loss_is_padding_invariant_bit_for_bit(method):
    torch.manual_seed(0)
    model = FrameNet()
    x1s = _utterances(LENGTHS)
    x0s = _utterances(LENGTHS, seed=1)
    losses = []
    for T, fill in [(9, 0.0), (16, 0.0), (23, 7.5)]:  # longer padding, and garbage in it
        x1, mask = _pad(x1s, T, fill)
        x0, _ = _pad(x0s, T, -fill)
        fm = methods.get(method, sigma=0.0) if method != "fm" else methods.get("fm")
        g = torch.Generator().manual_seed(3)
        losses.append(fm.loss(model, x0, x1, mask=mask, generator=g))
    if method == "i-cfm":  # deterministic with sigma = 0; eps would depend on T
        pass
    # the sums run over tensors of different lengths: equal to the last bit on CPU for these sizes
    assert losses[0].item() == losses[1].item() == losses[2].item()


def test_the_loss_is_the_mean_over_valid_elements_only():
    model = FrameNet()
    x1, mask = _pad(_utterances(LENGTHS), 9)
    x0, _ = _pad(_utterances(LENGTHS, seed=1), 9)
    fm = methods.get("i-cfm", sigma=0.0)
    s = fm.sample(x0, x1, mask=mask, generator=torch.Generator().manual_seed(0))
    v = model(s.x_t, s.t, mask=mask)
    per_elem = (v - s.u_t) ** 2
    expected = sum(per_elem[i, :, :n].sum() for i, n in enumerate(LENGTHS)) / (C * sum(LENGTHS))
    torch.testing.assert_close(fm.loss_from_sample(model, s), expected)
    # short and long utterances weigh per frame: not the mean of per-utterance means
    per_utt = torch.stack([per_elem[i, :, :n].mean() for i, n in enumerate(LENGTHS)]).mean()
    assert abs(float(per_utt.detach() - expected.detach())) > 1e-4
    assert torch.all(s.x_t[mask.expand_as(s.x_t) == 0] == 0) and torch.all(s.u_t[mask.expand_as(s.u_t) == 0] == 0)


def test_padded_frames_get_zero_gradient():
    model = FrameNet()
    x1, mask = _pad(_utterances(LENGTHS), 12, fill=3.0)
    x1.requires_grad_(True)
    x0, _ = _pad(_utterances(LENGTHS, seed=1), 12)
    x0.requires_grad_(True)
    loss = methods.get("ot-cfm", sigma=0.0).loss(model, x0, x1, mask=mask, generator=torch.Generator().manual_seed(0))
    loss.backward()
    pad = mask.expand_as(x1) == 0
    assert torch.all(x1.grad[pad] == 0) and torch.all(x0.grad[pad] == 0)
    assert x1.grad[~pad].abs().sum() > 0


def test_masked_mean_ignores_non_finite_padding():
    values = torch.tensor([[[1.0, 2.0, float("nan"), float("inf")]]], requires_grad=True)
    m = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    out = masked_mean(values, m)
    out.backward()
    assert out.item() == 1.5 and torch.equal(values.grad, torch.tensor([[[0.5, 0.5, 0.0, 0.0]]]))


def test_exact_ot_with_a_mask_is_the_brute_force_optimum_of_the_masked_cost():
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(6, C, 8, generator=g)
    x1 = torch.randn(6, C, 8, generator=g) + 1
    mask = lengths_to_mask(torch.tensor([8, 3, 5, 1, 8, 6]), 8)
    w = mask.expand_as(x1)
    cost = torch.stack(
        [torch.stack([((x0[i] - x1[j]) ** 2 * w[j]).sum() for j in range(6)]) for i in range(6)]
    ).double()
    best = min(sum(cost[i, p[i]] for i in range(6)) for p in itertools.permutations(range(6)))
    pairing = ExactOT().prepare(x0, x1, mask=mask)()
    got = sum(cost[int(a), int(b)] for a, b in zip(pairing.i0, pairing.i1))
    assert float(got) == pytest.approx(float(best), rel=1e-9)
    # the padding's content never enters the cost
    x1g = x1 + (1 - w) * 100.0
    assert torch.equal(ExactOT().prepare(x0, x1g, mask=mask)().i1, pairing.i1)


def test_couplings_without_mask_support_refuse_a_mask_in_one_line():
    x = torch.randn(4, C, 5)
    mask = torch.ones(4, 1, 5)
    with pytest.raises(ValueError, match="cannot pair padded sequences"):
        Sinkhorn(0.1).prepare(x, x, mask=mask)
    assert Independent().prepare(x, x, mask=mask)() is not None


def test_a_mask_is_checked_with_the_rule_and_the_value():
    x = torch.randn(2, C, 5)
    with pytest.raises(ValueError, match="only 0 and 1"):
        check_mask(torch.full((2, 1, 5), 0.5), x)
    with pytest.raises(ValueError, match="padding only"):
        check_mask(torch.tensor([[[1.0] * 5]] + [[[0.0] * 5]]), x)
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        check_mask(torch.ones(2, 5), x)


def test_a_model_without_a_mask_parameter_is_a_contract_error_naming_mask():
    class NoMask(nn.Module):
        def forward(self, x, t, cond=None):
            return x

    x1, mask = _pad(_utterances(LENGTHS), 9)
    with pytest.raises(ModelContractError, match="mask=None"):
        methods.get("i-cfm").loss(NoMask(), torch.randn_like(x1), x1, mask=mask)


@pytest.mark.parametrize("solver", ["euler", "rk4", "dopri5"])
def test_samplers_keep_padding_at_zero_and_valid_frames_independent_of_padding(solver):
    torch.manual_seed(0)
    model = FrameNet()
    x0s = _utterances(LENGTHS, seed=2)
    outs = []
    for T in (9, 14):
        x0, mask = _pad(x0s, T, fill=5.0)  # garbage in the padding of the initial noise
        res = sample(model, x0, solver=solver, steps=8, mask=mask, chunk_size=3)
        assert torch.all(res.x[mask.expand_as(res.x) == 0] == 0)
        outs.append(res.x)
    if solver == "dopri5":  # adaptive steps are chosen on the whole batch's error norm
        return
    for i, n in enumerate(LENGTHS):
        assert torch.equal(outs[0][i, :, :n], outs[1][i, :, :n])


def test_the_sde_sampler_keeps_padding_at_zero():
    class WithScore(FrameNet):
        def score(self, x, t, cond=None, mask=None):
            return -x if mask is None else -x * mask

    x0, mask = _pad(_utterances(LENGTHS), 10, fill=1.0)
    res = sample_sde(WithScore(), x0, sigma=0.5, steps=5, mask=mask, generator=torch.Generator().manual_seed(0))
    assert torch.all(res.x[mask.expand_as(res.x) == 0] == 0)


def test_spans_are_contiguous_valid_and_of_the_drawn_fraction():
    mask = lengths_to_mask(torch.tensor([10, 1, 7, 20]), 20)
    span = draw_spans(mask, 0.7, 1.0, generator=torch.Generator().manual_seed(0))
    for b, n in enumerate([10, 1, 7, 20]):
        row = span[b, 0]
        on = torch.nonzero(row).flatten()
        assert len(on) >= 1 and bool((row[n:] == 0).all())
        assert int(on[-1] - on[0]) + 1 == len(on)  # contiguous
        assert 0.7 * n - 1e-6 <= len(on) <= n


def test_the_infilling_loss_covers_the_span_and_the_model_sees_the_context():
    x1, mask = _pad(_utterances(LENGTHS), 9)
    x0 = torch.randn_like(x1)
    fm = InfillingMatcher(LinearPath(0.0), span_min=0.3, span_max=0.6)
    cond = SequenceCondition(speaker=torch.arange(4))
    s = fm.sample(x0, x1, cond, mask=mask, generator=torch.Generator().manual_seed(0))
    span = s.loss_mask
    assert span is not None and bool((span <= mask).all()) and 0 < span.sum() < mask.sum()
    torch.testing.assert_close(s.cond.context, x1 * (1 - span) * mask, rtol=0, atol=0)
    # the loss does not look at the velocity outside the span
    model = FrameNet(context=True)
    base = fm.loss_from_sample(model, s)

    class Perturbed(nn.Module):
        def forward(self, x, t, cond=None, mask=None):
            return model(x, t, cond, mask) + 10.0 * (1 - span)

    assert torch.equal(fm.loss_from_sample(Perturbed(), s), base)


def test_infilling_keeps_the_context_frames_exactly_and_padding_zero():
    x1, mask = _pad(_utterances(LENGTHS), 9)
    span = draw_spans(mask, 0.4, 0.6, generator=torch.Generator().manual_seed(1))
    out = infill(FrameNet(context=True), x1, span, mask=mask, generator=torch.Generator().manual_seed(0), steps=4)
    keep = ((1 - span) * mask).expand_as(x1) > 0
    assert torch.equal(out.x[keep], x1[keep])
    assert torch.all(out.x[mask.expand_as(x1) == 0] == 0)
    assert not torch.equal(out.x[(span.expand_as(x1) > 0)], x1[(span.expand_as(x1) > 0)])


class _Sequences:
    """A batch source of padded sequences of random lengths (variable T per batch)."""

    def __init__(self):
        self.data = _utterances([4 + (7 * i) % 13 for i in range(40)], seed=4)

    def check_batch_size(self, n):
        return None

    def __call__(self, n, generator=None):
        idx = torch.randperm(len(self.data), generator=generator)[:n]
        seqs = [self.data[int(i)] for i in idx]
        x, mask = _pad(seqs, max(s.shape[1] for s in seqs))
        return SequenceBatch(x, mask, SequenceCondition(speaker=idx % 3))


@pytest.mark.parametrize("method", ["i-cfm", "ot-cfm"])
def test_the_trainer_trains_on_padded_batches_with_prefetched_pairs_equal_to_inline(method):
    def run(workers):
        torch.manual_seed(0)
        model = FrameNet()
        cfg = TrainerConfig(steps=30, batch_size=8, lr=1e-2, quiet=True, coupling_workers=workers, log_every=5)
        res = Trainer(model, methods.get(method, sigma=0.0), NoiseLike(), _Sequences(), cfg).fit()
        return res, model

    (r0, m0), (r1, m1) = run(0), run(1)
    assert r1.losses == r0.losses
    assert r0.losses[-1][1] < r0.losses[0][1]
    for a, b in zip(m0.parameters(), m1.parameters()):
        assert torch.equal(a, b)
