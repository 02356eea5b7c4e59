"""Prefetched pairings equal inline ones: same pairs, same trained weights, exact resume and
interrupts with the coupling solved ahead in worker threads (flowmatch.training.prefetch)."""

from __future__ import annotations

import pytest
import torch

from flowmatch.couplings import BlockOT, ExactOT, Sinkhorn
from flowmatch.data import sample_toy
from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.models import MLP
from flowmatch.objectives import methods
from flowmatch.training.checkpoint import load_checkpoint
from flowmatch.training.prefetch import BatchPrefetcher, StepBatch
from flowmatch.training.trainer import Trainer, TrainerConfig

TARGET = sample_toy("moons", 400, generator=torch.Generator().manual_seed(1))


def _draw_fn(coupling, generator, n=48):
    src = StreamBatches(lambda k, generator=None: torch.randn(k, 2, generator=generator))
    tgt = TensorBatches(TARGET)

    def draw():
        x0 = src(n, generator=generator)
        x1 = tgt(n, generator=generator)
        return StepBatch(x0, x1, None, None), coupling.prepare(x0, x1, generator=generator)

    return draw


COUPLINGS = {
    "exact": ExactOT(),
    "sinkhorn-rows": Sinkhorn(0.05),
    "sinkhorn-sequential": Sinkhorn(0.05, sampling="sequential"),
    "sinkhorn-gumbel": Sinkhorn(0.05, sampling="gumbel"),
    "block-random": BlockOT(16, partition="random"),
}


@pytest.mark.parametrize("name", list(COUPLINGS))
@pytest.mark.parametrize("workers", [1, 3])
def test_prefetched_pairs_equal_inline_pairs(name, workers):
    coupling = COUPLINGS[name]
    steps = 7

    def run(w):
        g = torch.Generator().manual_seed(5)
        out = []
        with BatchPrefetcher(_draw_fn(coupling, g), g, workers=w, limit=steps) as pf:
            for _ in range(steps):
                b = pf.next()
                out.append((b.x0, b.x1, b.pairing.i0, b.pairing.i1))
            end_state = g.get_state()
        return out, end_state

    inline, s_inline = run(0)
    ahead, s_ahead = run(workers)
    for a, b in zip(inline, ahead):
        for u, v in zip(a, b):
            assert torch.equal(u, v)
    assert torch.equal(s_inline, s_ahead)  # nothing drawn past the limit
    # the pairings really differ from step to step (the test would be vacuous otherwise)
    assert not torch.equal(inline[0][3], inline[1][3])


def test_rewind_returns_to_the_consumed_step():
    g = torch.Generator().manual_seed(0)
    pf = BatchPrefetcher(_draw_fn(ExactOT(), g), g, workers=2, depth=4)
    first = pf.next()
    state_after_first = pf.state()
    second = pf.next()  # the queue now holds later steps
    assert not torch.equal(pf.generator.get_state(), pf.state())
    pf.rewind(include_current=True)  # undo `second`
    assert torch.equal(g.get_state(), state_after_first)
    again = pf.next()
    assert torch.equal(again.x0, second.x0) and torch.equal(again.pairing.i1, second.pairing.i1)
    assert not torch.equal(first.x0, second.x0)
    pf.close()


def _trainer(run_dir, *, steps, method="ot-cfm", workers=0, source=None, checkpoint_every=1000, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(2, hidden=32, depth=2)
    src = source or StreamBatches(lambda n, generator=None: torch.randn(n, 2, generator=generator))
    cfg = TrainerConfig(
        steps=steps,
        batch_size=32,
        lr=3e-3,
        seed=seed,
        log_every=4,
        checkpoint_every=checkpoint_every,
        quiet=True,
        coupling_workers=workers,
    )
    return Trainer(model, methods.get(method), src, TensorBatches(TARGET), cfg, run_dir=run_dir)


def _same_state(a: Trainer, b: Trainer):
    assert a.step == b.step
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert torch.equal(a.path_generator.get_state(), b.path_generator.get_state())


@pytest.mark.parametrize("method", ["ot-cfm", "sb-cfm"])
def test_training_with_prefetch_gives_the_same_weights(method):
    inline = _trainer(None, steps=12, method=method, workers=0)
    inline.fit()
    ahead = _trainer(None, steps=12, method=method, workers=2)
    ahead.fit()
    _same_state(inline, ahead)


def test_resume_with_prefetch_and_mid_run_checkpoints_equals_inline(tmp_path):
    straight = _trainer(tmp_path / "a", steps=20, workers=0)
    straight.fit()
    # checkpoints at 5, 10, 15 are written while the queue holds steps drawn ahead
    first = _trainer(tmp_path / "b", steps=12, workers=2, checkpoint_every=5)
    first.fit()
    second = _trainer(tmp_path / "b", steps=20, workers=1)
    assert second.fit(resume=True).resumed_from == 12
    _same_state(straight, second)


def test_resume_from_a_checkpoint_written_while_steps_were_queued(tmp_path):
    """The checkpoint at step 10 is written while steps 11 and 12 are drawn and queued: it must
    store the generator as of step 10, so a run resumed from it redraws steps 11, 12, ..."""
    straight = _trainer(tmp_path / "a", steps=16, workers=0)
    straight.fit()
    first = _trainer(tmp_path / "b", steps=16, workers=2, checkpoint_every=10)
    first.fit()
    import shutil

    from flowmatch.training.checkpoint import atomic_write_text

    ck = tmp_path / "c" / "checkpoints"
    ck.mkdir(parents=True)
    shutil.copytree(tmp_path / "b" / "checkpoints" / "step-00000010", ck / "step-00000010")
    atomic_write_text(ck / "latest", "step-00000010\n")
    resumed = _trainer(tmp_path / "c", steps=16, workers=1)
    assert resumed.fit(resume=True).resumed_from == 10
    _same_state(straight, resumed)


class RaiseAt:
    def __init__(self, batches, k):
        self.batches, self.k, self.calls = batches, k, 0

    def __call__(self, n, generator=None):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return self.batches(n, generator=generator)


def test_interrupt_while_drawing_ahead_resumes_identically(tmp_path):
    straight = _trainer(tmp_path / "a", steps=16, workers=0)
    straight.fit()
    src = RaiseAt(StreamBatches(lambda n, generator=None: torch.randn(n, 2, generator=generator)), 9)
    t = _trainer(tmp_path / "b", steps=16, workers=2, source=src)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    # the 9th draw happens ahead, while step 7 trains; it is raised when step 9 comes, as inline
    done = load_checkpoint(tmp_path / "b" / "checkpoints").step
    assert done == 8
    resumed = _trainer(tmp_path / "b", steps=16, workers=2)
    assert resumed.fit(resume=True).resumed_from == done
    _same_state(straight, resumed)


def test_bad_worker_counts_are_rejected():
    with pytest.raises(ValueError, match="coupling_workers must be an integer >= 0, got -1"):
        TrainerConfig(coupling_workers=-1)
    with pytest.raises(ValueError, match="workers must be an integer >= 0, got 1.5"):
        BatchPrefetcher(lambda: None, torch.Generator(), workers=1.5)


def test_run_config_coupling_workers_give_the_same_run(tmp_path):
    from flowmatch.runs.config import RunConfig
    from flowmatch.runs.run import train_run

    base = dict(
        target="moons", n_train=256, n_test=32, hidden=16, batch_size=32, steps=12, log_every=4, checkpoint_every=5
    )
    kw = dict(quiet=True, evaluate=False, plots=False)
    a, _, _ = train_run(RunConfig(coupling_workers=0, **base), tmp_path / "a", **kw)
    b, _, _ = train_run(RunConfig(coupling_workers="2", **base), tmp_path / "b", **kw)  # a CLI string
    _same_state(a, b)
    assert RunConfig.from_toml(tmp_path / "b" / "config.toml").coupling_workers == 2
    with pytest.raises(ValueError, match="coupling_workers must be 'auto' or an integer >= 0, got 'many'"):
        RunConfig(coupling_workers="many")
