"""Images: data loaders, the UNet, sample grids, the Fréchet distance, and a tiny class-conditional
training run that the classifier recognises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowmatch.data.images import (
    image_split,
    is_image_spec,
    load_digits,
    load_image_array,
    load_image_folder,
    load_torchvision,
)
from flowmatch.metrics.images import accuracy, frechet_distance, train_classifier
from flowmatch.models import UNet
from flowmatch.models.unet import _Attention
from flowmatch.plots import plot_image_grid

# --------------------------------------------------------------------------------------------
# UNet
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, mults, attn",
    [
        ((1, 8, 8), (1, 2), (4,)),
        ((1, 28, 28), (1, 2, 2), (7,)),
        ((1, 28, 28), (1, 2, 2, 2), ()),
        ((3, 32, 32), (1, 2, 2), (16, 8)),
        ((2, 12, 20), (1, 2), ()),
    ],
)
def test_unet_output_has_the_input_shape_and_depends_on_time_and_class(shape, mults, attn):
    torch.manual_seed(0)
    net = UNet(
        shape[0],
        base_channels=8,
        channel_mults=mults,
        attention_resolutions=attn,
        image_size=max(shape[1:]),
        num_classes=3,
    )
    n_attn = sum(isinstance(m, _Attention) for m in net.modules())
    assert n_attn == 1 + 3 * len(attn)  # middle block + (1 encoder + 2 decoder blocks) per level
    x = torch.randn(2, *shape)
    c = torch.tensor([0, 2])
    with torch.no_grad():
        v0 = net(x, torch.full((2,), 0.1), c)
        v1 = net(x, torch.full((2,), 0.9), c)
        vc = net(x, torch.full((2,), 0.1), torch.tensor([1, 1]))
    assert v0.shape == x.shape
    scale = float(v0.abs().mean())
    assert float((v0 - v1).abs().mean()) > 1e-3 * scale  # time-sensitive
    assert float((v0 - vc).abs().mean()) > 1e-3 * scale  # class-sensitive
    # Rows do not interact (GroupNorm, no batch statistics): one sample alone gives the same output.
    with torch.no_grad():
        torch.testing.assert_close(net(x[:1], torch.full((1,), 0.1), c[:1]), v0[:1], atol=1e-5, rtol=1e-4)


def test_unet_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"UNet expects x of shape \(B, 3, H, W\), got \(2, 1, 8, 8\)"):
        UNet(3, base_channels=8, image_size=8)(torch.zeros(2, 1, 8, 8), torch.rand(2))


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def test_digits_are_scaled_to_minus_one_one_with_labels():
    d = load_digits()
    assert d.images.shape == (1797, 1, 8, 8) and d.labels.shape == (1797,)
    assert float(d.images.min()) == -1.0 and float(d.images.max()) == 1.0
    assert sorted(d.labels.unique().tolist()) == list(range(10)) and d.classes == tuple("0123456789")
    # sklearn's values are 0..16: (v / 8) - 1 keeps 17 levels, 0 -> -1, 8 -> 0, 16 -> 1.
    assert len(torch.unique(d.images)) == 17


def test_image_split_is_disjoint_and_capped_at_a_fifth():
    sp = image_split("digits", n_test=1000, generator=torch.Generator().manual_seed(0))
    assert sp.test.shape[0] == 1797 // 5 and sp.train.shape[0] == 1797 - 1797 // 5
    assert sp.train_labels.shape[0] == sp.train.shape[0]
    d = load_digits()
    # Labels follow their images: look the test images up among all images.
    flat_all, flat_test = d.images.reshape(1797, -1), sp.test.reshape(len(sp.test), -1)
    for img, lab in zip(flat_test[:20], sp.test_labels[:20]):
        hits = (flat_all == img).all(1).nonzero().squeeze(1)
        assert lab in d.labels[hits]


def test_image_folder_labels_come_from_subfolders(tmp_path):
    from PIL import Image

    for cls, value in (("cat", 0), ("dog", 255)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(np.full((4, 6), value, np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_image_folder(tmp_path)
    assert d.classes == ("cat", "dog") and d.images.shape == (4, 1, 4, 6)
    assert d.labels.tolist() == [0, 0, 1, 1]
    assert bool((d.images[:2] == -1).all()) and bool((d.images[2:] == 1).all())
    assert is_image_spec(str(tmp_path))
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(ValueError, match="all images must have the size of the first one 6x4, got 5x5"):
        load_image_folder(tmp_path)


def test_image_arrays_npy_and_npz(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 3, 3)).astype(np.uint8)
    np.save(tmp_path / "a.npy", x)
    d = load_image_array(tmp_path / "a.npy")
    assert d.labels is None
    torch.testing.assert_close(d.images, torch.from_numpy(x).float() / 127.5 - 1)
    np.savez(tmp_path / "b.npz", images=x[:, 0], labels=np.array([0, 1, 1, 2, 0]))
    d = load_image_array(tmp_path / "b.npz")
    assert d.images.shape == (5, 1, 3, 3) and d.labels.tolist() == [0, 1, 1, 2, 0] and d.num_classes == 3
    assert is_image_spec(str(tmp_path / "a.npy")) and is_image_spec("digits")
    np.save(tmp_path / "flat.npy", np.zeros((5, 2)))
    assert not is_image_spec(str(tmp_path / "flat.npy")) and not is_image_spec("moons")


def test_torchvision_sets_are_read_from_disk_only(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(ValueError, match="never downloads"):
        load_torchvision("mnist", root=tmp_path)


# --------------------------------------------------------------------------------------------
# Grids and metrics
# --------------------------------------------------------------------------------------------


def test_image_grid_png_holds_the_tiles(tmp_path):
    from PIL import Image

    imgs = torch.stack([torch.full((1, 2, 2), -1.0), torch.full((1, 2, 2), 1.0), torch.zeros(1, 2, 2)])
    path = plot_image_grid(imgs, tmp_path / "g.png", ncols=2, padding=1, scale=1)
    a = np.asarray(Image.open(path))
    assert a.shape == (2 * 2 + 3, 2 * 2 + 3)
    assert (a[1:3, 1:3] == 0).all() and (a[1:3, 4:6] == 255).all() and (a[4:6, 1:3] == 128).all()
    assert (a[0] == 255).all() and (a[4:6, 4:6] == 255).all()  # padding and the empty cell are white


def test_frechet_distance_matches_the_closed_form_with_scipy_sqrtm():
    from scipy.linalg import sqrtm

    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    b = torch.randn(200, 5, generator=g, dtype=torch.float64) * 2 + 1
    s_a, s_b = np.cov(a.numpy().T), np.cov(b.numpy().T)
    expected = float(((a.mean(0) - b.mean(0)) ** 2).sum()) + np.trace(s_a + s_b - 2 * np.real(sqrtm(s_a @ s_b)))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.slow
def test_tiny_conditional_training_run_beats_chance_under_the_classifier(tmp_path):
    """A small UNet trained for a few seconds on 8x8 digits with labels: the classifier recognises
    its class-conditional samples far above chance (10%)."""
    from flowmatch.models.guidance import guided
    from flowmatch.runs.config import RunConfig
    from flowmatch.runs.run import load_run, train_run
    from flowmatch.sampling.ode import sample

    cfg = RunConfig(
        target="digits",
        cond="label",
        guidance_dropout=0.1,
        unet_width=8,
        unet_attention="none",
        steps=100,
        batch_size=64,
        lr=3e-3,
        lr_schedule="cosine",
        device="cpu",
        seed=0,
    )
    trainer, result, _ = train_run(cfg, tmp_path / "run", quiet=True, evaluate=False, plots=False)
    run = load_run(tmp_path / "run", device="cpu")
    torch.testing.assert_close(next(run.model.parameters()), next(trainer.sampling_model.parameters()))
    clf, info = train_classifier(run.data.target.train, run.data.labels.train, 10, epochs=3)
    test = run.data.target.test
    assert accuracy(clf, test, run.data.labels.test) > 0.8
    labels = torch.arange(10).repeat(10)
    x0 = torch.randn(100, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    acc = {}
    for w in (0.0, 2.0):
        x = sample(guided(run.model, w), x0, solver="midpoint", steps=5, cond=labels).x.clamp(-1, 1)
        acc[w] = accuracy(clf, x, labels)
    assert acc[2.0] > 0.3, acc  # chance is 0.1
    assert acc[2.0] > acc[0.0] + 0.15, acc  # the condition, not the sampler, does it

    # The CLI samples the same run: one class, guided, as a grid and an array.
    from flowmatch.cli import main

    grid, out = tmp_path / "grid.png", tmp_path / "x.npy"
    assert (
        main(
            [
                "sample",
                str(tmp_path / "run"),
                "--cond",
                "3",
                "--guidance",
                "2",
                "--n",
                "8",
                "--steps",
                "2",
                "--solver",
                "midpoint",
                "--grid",
                str(grid),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert grid.is_file() and np.load(out).shape == (8, 1, 8, 8)
    x = torch.from_numpy(np.load(out))
    x0 = torch.randn(8, 64, generator=torch.Generator().manual_seed(0)).reshape(8, 1, 8, 8)
    expected = sample(guided(run.model, 2.0), x0, solver="midpoint", steps=2, cond=torch.full((8,), 3)).x
    torch.testing.assert_close(x, expected)


def test_image_run_settings_and_config_checks():
    from flowmatch.runs.config import RunConfig
    from flowmatch.runs.image import unet_settings

    cfg = RunConfig(target="digits", cond="label")
    assert unet_settings(cfg, (1, 8, 8))["channel_mults"] == (1, 2)
    assert unet_settings(cfg, (1, 8, 8))["attention_resolutions"] == ()
    assert unet_settings(cfg, (3, 32, 32))["attention_resolutions"] == (16,)
    assert unet_settings(cfg, (1, 28, 28))["channel_mults"] == (1, 2, 2)
    custom = RunConfig(unet_mults="1,1,2", unet_attention="8,4")
    assert unet_settings(custom, (1, 16, 16))["channel_mults"] == (1, 1, 2)
    assert unet_settings(custom, (1, 16, 16))["attention_resolutions"] == (8, 4)
    with pytest.raises(ValueError, match="guidance_dropout needs a condition"):
        RunConfig(guidance_dropout=0.1)
    with pytest.raises(ValueError, match="unet_mults must be a comma-separated list of positive integers"):
        RunConfig(unet_mults="1,x")
    with pytest.raises(ValueError, match="unknown cond 'vector'"):
        RunConfig(cond="vector")
