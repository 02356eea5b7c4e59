"""Conditioning and classifier-free guidance: the null condition, condition dropout, guided fields,
label-respecting couplings, and conditions carried through the trainer's batches."""

from __future__ import annotations

import math

import pytest
import torch

import flowmatch
from flowmatch.couplings import ExactOT, Pairing, Sinkhorn, WithinLabels, condition_groups
from flowmatch.data.batches import TensorBatches
from flowmatch.data.conditioning import NULL_LABEL, drop_condition, null_like, null_mask
from flowmatch.models import CondEmbedding, ConditionalMLP, UNet
from flowmatch.models.guidance import GuidedModel, guided
from flowmatch.objectives import methods
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.ot.transport import squared_cost
from flowmatch.paths import LinearPath
from flowmatch.sampling.ode import ode_solvers, sample


def _models():
    torch.manual_seed(0)
    return {
        "mlp-label": (ConditionalMLP(3, num_classes=4, hidden=32), (3,), torch.tensor([0, 1, 2, 3, 1, 0])),
        "mlp-vector": (ConditionalMLP(3, cond_shape=(2,), hidden=32), (3,), torch.randn(6, 2)),
        "mlp-sequence": (ConditionalMLP(3, cond_shape=(2, 3), hidden=32), (3,), torch.randn(6, 2, 3)),
        "unet-label": (
            UNet(1, base_channels=8, channel_mults=(1, 2), num_classes=4, image_size=8),
            (1, 8, 8),
            torch.tensor([0, 1, 2, 3, 1, 0]),
        ),
        "unet-vector": (
            UNet(2, base_channels=8, channel_mults=(1, 2), cond_shape=5, image_size=8),
            (2, 8, 8),
            torch.randn(6, 5),
        ),
    }


# --------------------------------------------------------------------------------------------
# Guidance: v_w = v_null + w (v_cond - v_null)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(_models()))
def test_guidance_is_the_affine_combination_and_w1_is_the_conditional_field(name):
    model, shape, cond = _models()[name]
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(6, *shape, generator=g), torch.rand(6, generator=g)
    with torch.no_grad():
        v_cond = model(x, t, cond)
        v_null = model(x, t, None)
        # w = 1 is the plain conditional field, w = 0 the unconditional (null) field.
        torch.testing.assert_close(guided(model, 1.0)(x, t, cond), v_cond)
        torch.testing.assert_close(guided(model, 0.0)(x, t, cond), v_null)
        # The null condition written in the tensor is the same as cond=None.
        torch.testing.assert_close(model(x, t, null_like(cond)), v_null)
        for w in (0.5, 2.0, 4.0):
            torch.testing.assert_close(guided(model, w)(x, t, cond), v_null + w * (v_cond - v_null))
    assert not torch.allclose(v_cond, v_null)  # the condition matters


@pytest.mark.filterwarnings("ignore::flowmatch.sampling.ode.SolverToleranceWarning")  # asserted in test_solvers
def test_guided_model_works_with_every_ode_solver():
    model, _, cond = _models()["mlp-label"]
    x0 = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    for solver in ode_solvers():
        a = sample(guided(model, 1.0), x0, solver=solver, steps=4, cond=cond)
        b = sample(model, x0, solver=solver, steps=4, cond=cond)
        torch.testing.assert_close(a.x, b.x)
        c = sample(guided(model, 3.0), x0, solver=solver, steps=4, cond=cond, chunk_size=4)
        assert c.x.shape == x0.shape and torch.isfinite(c.x).all()
        assert not torch.allclose(c.x, b.x)


def test_guidance_scale_must_be_finite():
    model, _, _ = _models()["mlp-label"]
    with pytest.raises(ValueError, match="guidance scale must be a finite number, got nan"):
        GuidedModel(model, float("nan"))


# --------------------------------------------------------------------------------------------
# Condition dropout and the learned null condition
# --------------------------------------------------------------------------------------------


def test_condition_dropout_has_the_requested_fraction_and_keeps_other_rows():
    n, p = 200_000, 0.1
    labels = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))
    dropped = drop_condition(labels, p, generator=torch.Generator().manual_seed(1))
    mask = null_mask(dropped)
    frac = float(mask.float().mean())
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)  # 5 standard errors: 0.0034
    assert torch.equal(dropped[~mask], labels[~mask]) and bool((dropped[mask] == NULL_LABEL).all())
    # Same generator state, same mask; vectors get NaN rows at exactly the same places.
    vec = torch.randn(n, 3, generator=torch.Generator().manual_seed(2))
    vdrop = drop_condition(vec, p, generator=torch.Generator().manual_seed(1))
    assert torch.equal(null_mask(vdrop), mask)
    assert torch.equal(vdrop[~mask], vec[~mask])
    assert torch.equal(drop_condition(labels, 0.0, generator=torch.Generator()), labels)
    assert bool(null_mask(drop_condition(labels[:100], 1.0, generator=torch.Generator())).all())


def test_matcher_drops_conditions_with_its_generator_after_the_path_draws():
    fm = methods.get("i-cfm")
    fm.cond_dropout = 0.25
    g = torch.Generator().manual_seed(0)
    n = 40_000
    x0, x1 = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    labels = torch.randint(0, 5, (n,), generator=g)
    s = fm.sample(x0, x1, labels, generator=torch.Generator().manual_seed(3))
    frac = float(null_mask(s.cond).float().mean())
    assert abs(frac - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)
    # The path draws (t, eps) are those of the matcher without dropout: dropout comes last.
    plain = methods.get("i-cfm").sample(x0, x1, labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s.t, plain.t) and torch.equal(s.x_t, plain.x_t)
    assert torch.equal(plain.cond, labels)
    with pytest.raises(ValueError, match=r"cond_dropout must be a number in \[0, 1\], got 1.5"):
        fm.cond_dropout = 1.5


@pytest.mark.parametrize("kind", ["label", "vector"])
def test_the_learned_null_condition_is_used_exactly_where_dropped(kind):
    torch.manual_seed(0)
    n = 64
    if kind == "label":
        model = ConditionalMLP(2, num_classes=3, hidden=16)
        cond = torch.randint(0, 3, (n,))
    else:
        model = ConditionalMLP(2, cond_shape=(4,), hidden=16)
        cond = torch.randn(n, 4)
    x, t = torch.randn(n, 2), torch.rand(n)
    dropped = drop_condition(cond, 0.5, generator=torch.Generator().manual_seed(0))
    m = null_mask(dropped)
    assert 0 < int(m.sum()) < n
    v = model(x, t, dropped)
    torch.testing.assert_close(v[m], model(x, t, None)[m])
    torch.testing.assert_close(v[~m], model(x, t, cond)[~m])
    # The null embedding is a parameter that learns: it gets a finite, non-zero gradient, and
    # no NaN of a dropped vector row leaks into any gradient.
    v.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    emb = model.cond_embed
    null_grad = emb.table.weight.grad[emb.num_classes] if kind == "label" else emb.null.grad
    assert float(null_grad.abs().sum()) > 0


def test_cond_embedding_rejects_bad_labels_and_shapes():
    emb = CondEmbedding(num_classes=3)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\).*got 3"):
        emb(torch.tensor([0, 3]), 2)
    with pytest.raises(ValueError, match="give exactly one of num_classes"):
        CondEmbedding(num_classes=3, cond_shape=(2,))
    with pytest.raises(ValueError, match=r"cond must have shape \(2, \*\(4,\)\)"):
        CondEmbedding(cond_shape=(4,))(torch.zeros(2, 3), 2)


# --------------------------------------------------------------------------------------------
# Couplings: conditions stay attached to their samples
# --------------------------------------------------------------------------------------------


def _labelled(n=48, seed=0):
    """Targets whose label is a function of the point: class k sits around (3k, 0)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    x1 = torch.randn(n, 2, generator=g) * 0.3 + torch.stack([3.0 * labels, torch.zeros(n)], 1)
    x0 = torch.randn(n, 2, generator=g)
    return x0, x1, labels


def _label_of(x1):
    return torch.round(x1[:, 0] / 3.0).long()


@pytest.mark.parametrize("base", [ExactOT(), Sinkhorn(0.05)])
def test_label_restricted_pairs_keep_labels_attached_and_x0_positions(base):
    x0, x1, labels = _labelled()
    assert torch.equal(_label_of(x1), labels)
    fm = FlowMatcher(LinearPath(0.0), WithinLabels(base))
    s = fm.sample(x0, x1, labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.cond, _label_of(s.x1))  # each label is still the label of its sample
    assert torch.equal(s.cond, labels)  # pairs are made within labels: positions keep their label
    assert torch.equal(s.x0, x0)


def test_label_restricted_exact_ot_is_optimal_within_each_label():
    x0, x1, labels = _labelled(40)
    p = WithinLabels(ExactOT())(x0, x1, cond=labels)
    for k in labels.unique():
        pos = (labels == k).nonzero().squeeze(1)
        cost = squared_cost(x0[pos], x1[pos])
        paired = float(((x0[pos] - x1[p.i1[pos]]) ** 2).sum())
        opt_perm = ExactOT()(x0[pos], x1[pos]).i1
        assert math.isclose(paired, float(cost[torch.arange(len(pos)), opt_perm].sum()), rel_tol=1e-5)
    # Unrestricted OT pairs noise across labels; restricted OT never does.
    free = ExactOT()(x0, x1)
    assert not torch.equal(labels[free.i1], labels)
    assert torch.equal(labels[p.i1], labels)


def test_condition_groups_of_vectors_and_nulls():
    cond = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [float("nan")] * 2, [float("nan")] * 2])
    gid = condition_groups(cond)
    assert gid[0] == gid[1] and gid[3] == gid[4] and len(set(gid.tolist())) == 3


def test_matcher_passes_cond_to_couplings_that_take_it():
    seen = {}

    class Recording(ExactOT):
        def __call__(self, x0, x1, *, generator=None, cond=None):
            seen["cond"] = cond
            return Pairing(torch.arange(len(x0)), torch.arange(len(x1)).flip(0))

    x0, x1, labels = _labelled(8)
    s = FlowMatcher(LinearPath(0.0), Recording()).sample(x0, x1, labels)
    assert torch.equal(seen["cond"], labels)
    assert torch.equal(s.cond, labels.flip(0)) and torch.equal(s.x1, x1.flip(0))


def test_tensor_batches_return_conditions_attached_and_trainer_uses_them():
    data = torch.arange(20.0).reshape(10, 2)
    labels = torch.arange(10)
    batches = TensorBatches(data, cond=labels)
    x, c = batches(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 0] / 2, c.float())
    from flowmatch.training.trainer import Trainer, TrainerConfig

    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, cond=None):
            seen.append(cond)
            return x * self.w

    src = lambda n, generator=None: torch.randn(n, 2, generator=generator)  # noqa: E731
    Trainer(Probe(), methods.get("ot-cfm"), src, batches, TrainerConfig(steps=2, batch_size=4, quiet=True)).fit()
    assert len(seen) == 2 and all(c is not None and c.shape == (4,) for c in seen)


def test_flowmatch_sample_is_exported():
    assert flowmatch.sample is sample


def test_label_restricted_pairing_prepared_ahead_equals_inline():
    """WithinLabels draws in prepare() and solves in the thunk, so training with the pairings
    computed ahead in a worker thread gives the same weights as computing them inline."""
    from flowmatch.training.trainer import Trainer, TrainerConfig

    x0, x1, labels = _labelled(16)
    coupling = WithinLabels(ExactOT())
    thunk = coupling.prepare(x0, x1, cond=labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(thunk().i1, coupling(x0, x1, cond=labels).i1)

    g = torch.Generator().manual_seed(0)
    data, cond = torch.randn(64, 2, generator=g), torch.randint(0, 3, (64,), generator=g)

    def fit(workers):
        torch.manual_seed(0)
        model = ConditionalMLP(2, num_classes=3, hidden=16)
        fm = FlowMatcher(LinearPath(0.1), WithinLabels(ExactOT()), cond_dropout=0.2)
        src = lambda n, generator=None: torch.randn(n, 2, generator=generator)  # noqa: E731
        cfg = TrainerConfig(steps=6, batch_size=16, quiet=True, coupling_workers=workers)
        Trainer(model, fm, src, TensorBatches(data, cond=cond), cfg).fit()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(fit(0), fit(1))
