"""Tests of the data-at-scale batch sources (issue 20): the O(batch) row sampler draws the law of
randperm(N)[:n] (chi-squared, and a biased sampler is rejected), memory-mapped .npy files give the
batches of the same array in memory, and a map-style Dataset read by 2 DataLoader workers trains
and resumes bit for bit."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from flowmatch.data import sample_toy
from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.data.datasets import DatasetBatches, LoaderBatches, as_batches
from flowmatch.data.mmap import MemmapBatches, mmap_split, open_npy, use_mmap
from flowmatch.data.rows import PERMUTATION_MAX_ROWS, draw_rows
from flowmatch.data.split import train_test_split
from flowmatch.models import MLP
from flowmatch.objectives import methods
from flowmatch.training.checkpoint import load_checkpoint
from flowmatch.training.sources import NotResumableWarning
from flowmatch.training.trainer import Trainer, TrainerConfig

P_MIN = 1e-3  # a correct sampler fails a test at this level once in a thousand seeds

# --------------------------------------------------------------------------------------------
# the row sampler
# --------------------------------------------------------------------------------------------


def modulo_biased_rows(n_rows: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """The classic bug: a 15-bit random number taken modulo N (rows below 2^15 - N twice as likely);
    distinct rows by rejection as the real sampler does."""
    idx = torch.randint(1 << 15, (n,), generator=generator) % n_rows
    return torch.unique(idx)  # distinct (and sorted: the order is biased too)


def row_frequency_p(sampler, n_rows: int, n: int, steps: int, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(n_rows, dtype=torch.int64)
    for _ in range(steps):
        idx = sampler(n_rows, n, g)
        assert len(torch.unique(idx)) == len(idx)  # distinct rows within a batch
        counts += torch.bincount(idx, minlength=n_rows)
    return float(chisquare(counts.numpy()).pvalue)


@pytest.mark.parametrize("method", ["permutation", "rejection"])
def test_row_frequencies_over_many_steps_are_uniform(method):
    """20000 rows, 800 batches of 256 (about 10 draws per row): chi-squared against uniform."""
    p = row_frequency_p(lambda N, n, g: draw_rows(N, n, g, method=method), 20_000, 256, 800)
    assert p > P_MIN, p


def test_the_uniformity_test_rejects_a_biased_sampler():
    p = row_frequency_p(modulo_biased_rows, 20_000, 256, 800)
    assert p < 1e-12, p


def test_rejection_sampler_draws_every_ordered_tuple_equally_often():
    """N = 5, n = 3 (many repeats to redraw): the 60 ordered tuples of distinct rows are equally
    likely (the law of randperm(5)[:3]); a sampler returning sorted rows is rejected."""
    tuples = list(itertools.permutations(range(5), 3))
    where = {t: i for i, t in enumerate(tuples)}

    def p_of(sampler) -> float:
        g = torch.Generator().manual_seed(1)
        counts = np.zeros(len(tuples))
        for _ in range(12_000):
            counts[where[tuple(sampler(g).tolist())]] += 1
        return float(chisquare(counts).pvalue)

    assert p_of(lambda g: draw_rows(5, 3, g, method="rejection")) > P_MIN
    assert p_of(lambda g: torch.sort(draw_rows(5, 3, g, method="rejection")).values) < 1e-12


def test_auto_keeps_the_permutation_batches_of_small_sets_and_is_o_batch_above():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    data = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    batches = TensorBatches(data)
    for _ in range(3):  # the stream of earlier versions: the first n of a full permutation
        assert torch.equal(batches(64, g1), data[torch.randperm(1000, generator=g2)[:64]])
    big = PERMUTATION_MAX_ROWS * 4
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(draw_rows(big, 64, g1), draw_rows(big, 64, g2, method="rejection"))
    # n > N / 4: rejection would take many rounds, auto permutes
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(draw_rows(big, big // 2, g1), torch.randperm(big, generator=g2)[: big // 2])


def test_row_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="must not exceed the 10 rows, got 11"):
        draw_rows(10, 11)
    with pytest.raises(ValueError, match="row sampler must be one of .*, got 'feistel'"):
        draw_rows(10, 2, method="feistel")
    with pytest.raises(ValueError, match="row sampler must be one of"):
        TensorBatches(torch.zeros(3, 2), rows="nope")


# --------------------------------------------------------------------------------------------
# memory-mapped .npy
# --------------------------------------------------------------------------------------------


def write_npy(path: Path, n: int, d: int = 3, seed: int = 0) -> np.ndarray:
    arr = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    np.save(path, arr)
    return arr


@pytest.mark.parametrize("n_rows", [500, 2 * PERMUTATION_MAX_ROWS])  # permutation and rejection rows
def test_mmap_batches_equal_the_in_memory_batches_with_the_same_seed(tmp_path, n_rows):
    arr = write_npy(tmp_path / "x.npy", n_rows)
    mapped = open_npy(tmp_path / "x.npy")
    assert isinstance(mapped, np.memmap)  # mapped, not read
    a, b = MemmapBatches(mapped), TensorBatches(torch.from_numpy(arr))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for _ in range(5):
        assert torch.equal(a(128, g1), b(128, g2))
    assert torch.equal(g1.get_state(), g2.get_state())


def test_pread_reads_the_batches_of_the_mapping_without_mapping_them(tmp_path):
    """pread=True: the same batches (also from a float64 file and a moved copy), read by system
    calls; a truncated file is a ValueError, an array that is not mapped cannot be read so."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((3000, 5)))  # float64
    mapped = open_npy(tmp_path / "x.npy")
    a, b = MemmapBatches(mapped), MemmapBatches(mapped, pread=True).to("cpu")
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for _ in range(3):
        assert torch.equal(a(256, g1), b(256, g2))
    with pytest.raises(ValueError, match="pread needs a C-ordered memory-mapped array"):
        MemmapBatches(np.zeros((4, 2)), pread=True)
    short = MemmapBatches(mapped, pread=True)
    with open(tmp_path / "x.npy", "r+b") as fh:
        fh.truncate(mapped.offset + 100 * 5 * 8)
    with pytest.raises(ValueError, match="the file ends before row"):
        short.gather(torch.tensor([2999]))


def test_mmap_split_is_the_in_memory_split_and_draws_its_batches(tmp_path):
    """The split of a mapped file equals train_test_split of the array in memory (the same test
    rows, the same train rows in the same order), and its train part draws the same batches."""
    arr = write_npy(tmp_path / "x.npy", 300)
    train, test = mmap_split(open_npy(tmp_path / "x.npy"), 40, generator=torch.Generator().manual_seed(0))
    split = train_test_split(torch.from_numpy(arr), test_size=40, generator=torch.Generator().manual_seed(0))
    assert len(train) == 260 and torch.equal(test, split.test)
    assert torch.equal(train.gather(torch.arange(260)), split.train)
    in_memory = TensorBatches(split.train)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(4):
        assert torch.equal(train(100, g1), in_memory(100, g2))


def test_mmap_rejects_bad_files_and_non_finite_rows(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="malformed npy file .*must start with the bytes"):
        open_npy(tmp_path / "bad.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 2), np.float32))
    with pytest.raises(ValueError, match=r"must be 2-D \(N, D\) with N, D >= 1, got shape \(0, 2\)"):
        open_npy(tmp_path / "empty.npy")
    arr = np.zeros((4, 2), np.float32)
    arr[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    with pytest.raises(ValueError, match="rows must be finite, got a NaN or infinity in row 2"):
        MemmapBatches(open_npy(tmp_path / "nan.npy"))(4, torch.Generator())
    with pytest.raises(ValueError, match="mmap must be one of auto, on, off, pread, got 'yes'"):
        use_mmap(tmp_path / "nan.npy", "yes")
    assert use_mmap(tmp_path / "nan.npy", "on") and not use_mmap(tmp_path / "nan.npy", "auto")


# --------------------------------------------------------------------------------------------
# Datasets and DataLoaders
# --------------------------------------------------------------------------------------------

TARGET = sample_toy("8gaussians", 256, generator=torch.Generator().manual_seed(1))


class Rows(Dataset):
    """A map-style Dataset of the rows of a tensor (read one item at a time, as from disk)."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[i]


def test_dataset_batches_are_the_same_with_and_without_workers_and_distinct_rows():
    inline, workers = DatasetBatches(Rows(TARGET)), DatasetBatches(Rows(TARGET), num_workers=2)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(6):
        a, b = inline(32, g1), workers(32, g2)
        assert torch.equal(a, b)
        assert len(torch.unique(a, dim=0)) == 32
    workers.close()
    assert torch.equal(inline.sampler_state(), workers.sampler_state())
    # a sampler put back at batch 2 reads batch 2 again
    again = DatasetBatches(Rows(TARGET))
    state = inline.sampler_state()
    state[2] = 2
    again.load_sampler_state(state)
    replay = DatasetBatches(Rows(TARGET))
    g3 = torch.Generator().manual_seed(5)
    expected = [replay(32, g3) for _ in range(3)][2]
    assert torch.equal(again(32, None), expected)


def make_trainer(run_dir, target, *, steps=20, source=None, workers=1):
    torch.manual_seed(0)
    model = MLP(2, hidden=32, depth=2)
    cfg = TrainerConfig(steps=steps, batch_size=32, lr=3e-3, seed=0, log_every=5, quiet=True, coupling_workers=workers)
    src = source or StreamBatches(lambda n, generator=None: torch.randn(n, 2, generator=generator))
    return Trainer(model, methods.get("ot-cfm"), src, target, cfg, run_dir=run_dir)


class RaiseAt:
    """A batch source that raises KeyboardInterrupt on its ``k``-th call."""

    def __init__(self, batches, k: int):
        self.batches, self.k, self.calls = batches, k, 0

    def __call__(self, n, generator=None):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return self.batches(n, generator=generator)


def test_a_dataloader_source_with_two_workers_trains_and_resumes_bit_identically(tmp_path):
    """OT-CFM with the pairing solved a step ahead in a thread and the target read by 2 DataLoader
    workers: interrupted after step 8 (the source fails on its 9th call, drawn ahead of that step),
    then resumed by a fresh Trainer and fresh workers, it ends with the weights, optimizer state and
    generator of a run that was never interrupted."""
    straight = make_trainer(tmp_path / "a", DatasetBatches(Rows(TARGET), num_workers=2))
    straight.fit()
    gaussian = StreamBatches(lambda n, generator=None: torch.randn(n, 2, generator=generator))
    t = make_trainer(tmp_path / "b", DatasetBatches(Rows(TARGET), num_workers=2), source=RaiseAt(gaussian, 9))
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    ck = load_checkpoint(tmp_path / "b" / "checkpoints")
    assert ck.step == 8
    assert ck.rng["target_sampler"].view(torch.int64)[2] == 8  # 8 batches read, not the ones read ahead
    resumed = make_trainer(tmp_path / "b", DatasetBatches(Rows(TARGET), num_workers=2))
    assert resumed.fit(resume=True).resumed_from == 8
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())
    assert torch.equal(straight.target.sampler_state(), resumed.target.sampler_state())
    # and the run is not the in-memory one by accident: the dataset's rows are its own stream
    other = make_trainer(tmp_path / "c", TensorBatches(TARGET))
    other.fit()
    assert not torch.equal(other.model.net[0].weight, straight.model.net[0].weight)


def test_the_trainer_takes_a_dataset_an_array_and_a_dataloader(tmp_path):
    assert isinstance(make_trainer(None, Rows(TARGET), steps=2).target, DatasetBatches)
    assert isinstance(make_trainer(None, TARGET.numpy(), steps=2).target, TensorBatches)
    np.save(tmp_path / "t.npy", TARGET.numpy())
    assert isinstance(make_trainer(None, open_npy(tmp_path / "t.npy"), steps=2).target, MemmapBatches)
    loader = DataLoader(TensorDataset(TARGET), batch_size=48, shuffle=True, generator=torch.Generator().manual_seed(0))
    t = make_trainer(tmp_path / "d", loader, steps=6)
    assert t.fit().step == 6 and math.isfinite(t.fit().final_loss)
    with pytest.raises(TypeError, match="target must be a batch source .*got int"):
        make_trainer(None, 3)
    with pytest.raises(ValueError, match="batch size must not exceed the target set of 10 items, got 32"):
        make_trainer(None, Rows(TARGET[:10]))


def test_resuming_with_a_dataloader_warns_that_the_batches_differ(tmp_path):
    loader = DataLoader(TensorDataset(TARGET), batch_size=48, shuffle=True)
    make_trainer(tmp_path / "e", loader, steps=4).fit()
    with pytest.warns(NotResumableWarning, match="target .*LoaderBatches.* not checkpointed"):
        make_trainer(tmp_path / "e", loader, steps=6).fit(resume=True)


def test_loader_batches_cut_the_stream_into_batches_across_chunks_and_passes():
    x = torch.arange(10.0)[:, None]
    labels = torch.arange(10)
    batches = LoaderBatches(DataLoader(TensorDataset(x, labels), batch_size=4))  # chunks of 4, 4, 2
    got = [batches(3) for _ in range(5)]  # 15 rows: one pass and half of the next
    rows = torch.cat([b[0] for b in got])[:, 0]
    assert torch.equal(rows, torch.cat([torch.arange(10.0), torch.arange(5.0)]))
    assert all(torch.equal(b[0][:, 0].long(), b[1]) for b in got)  # conditions stay with their rows

    class Empty(IterableDataset):
        def __iter__(self):
            return iter(())

    with pytest.raises(ValueError, match="must yield at least one batch per pass"):
        as_batches(Empty())(4)


def test_resuming_a_checkpoint_without_the_datasets_position_is_an_error(tmp_path):
    make_trainer(tmp_path / "f", TensorBatches(TARGET), steps=3).fit()
    with pytest.raises(ValueError, match="must hold the target sampler's position"):
        make_trainer(tmp_path / "f", DatasetBatches(Rows(TARGET)), steps=6).fit(resume=True)


def test_an_iterable_dataset_of_single_samples_is_read_in_order_and_cycled():
    class Count(IterableDataset):
        def __iter__(self):
            return iter(torch.arange(5.0)[:, None])

    batches = as_batches(Count(), name="counts")
    assert isinstance(batches, LoaderBatches)
    assert torch.equal(batches(7)[:, 0], torch.tensor([0.0, 1, 2, 3, 4, 0, 1]))
