"""The device cache: training images packed on the accelerator, crops cut there by position."""

from __future__ import annotations

import pytest
import torch

from sr_lightning.apps.train import train
from sr_lightning.data.datasets import CropPositions, ImageSet, PatchDataset
from sr_lightning.data.device_cache import PackedImages, packed_bytes, use_device_cache
from tests.helpers.config import tiny_overrides
from tests.helpers.data import make_datamodule

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)
GIB = 2**30


@pytest.mark.parametrize("channels", [1, 3])
def test_packed_crops_equal_slicing_the_images(channels):
    g = torch.Generator().manual_seed(0)
    sizes = [(20, 31), (45, 17), (17, 17), (64, 40)]
    images = [
        torch.randint(0, 256, (channels, h, w), generator=g, dtype=torch.uint8) for h, w in sizes
    ]
    packed = PackedImages(images, "cpu")
    assert packed.nbytes == packed_bytes([im.shape for im in images])
    p = 17
    rows = []
    for i, (h, w) in enumerate(sizes):  # every corner of every image, and a middle
        for top, left in [
            (0, 0),
            (h - p, 0),
            (0, w - p),
            (h - p, w - p),
            ((h - p) // 2, (w - p) // 3),
        ]:
            rows.append((i, top, left))
    crops = packed.crop(torch.tensor(rows), p)
    assert crops.dtype == torch.uint8 and crops.shape == (len(rows), channels, p, p)
    for crop, (i, top, left) in zip(crops, rows, strict=True):
        assert torch.equal(crop, images[i][:, top : top + p, left : left + p])


def test_packing_refuses_mixed_channel_counts():
    with pytest.raises(ValueError, match="one channel count"):
        PackedImages(
            [torch.zeros(1, 4, 4, dtype=torch.uint8), torch.zeros(3, 4, 4, dtype=torch.uint8)],
            "cpu",
        )


def test_positions_and_host_crops_draw_the_same_patches():
    images = [
        torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
        for h, w in [(40, 52), (90, 33), (33, 33)]
    ]
    image_set = ImageSet("t", ["a", "b", "c"], images)
    positions = CropPositions(image_set, 33, patches_per_image=8)
    host = PatchDataset(image_set, 33, patches_per_image=8)
    indices = list(range(len(host)))
    torch.manual_seed(3)
    rows = positions.__getitems__(indices)
    torch.manual_seed(3)
    crops = host.__getitems__(indices)
    assert rows.dtype == torch.int64 and rows.shape == (24, 3)
    assert torch.equal(rows[:, 0], torch.arange(24) // 8)
    packed = PackedImages(images, "cpu").crop(rows, 33)
    assert all(torch.equal(a, b) for a, b in zip(packed, crops, strict=True))


@pytest.mark.parametrize(
    "mode,device,free,expected",
    [
        ("false", CUDA, 80 * GIB, False),
        ("auto", CPU, None, False),  # host workers overlap with a CPU step instead
        ("auto", CUDA, 80 * GIB, True),
        ("auto", CUDA, 3 * GIB, False),  # 1 GiB is more than a quarter of the free 3 GiB
        ("true", CPU, None, True),
        ("true", CUDA, 3 * GIB, True),
        (True, CUDA, 3 * GIB, True),  # YAML booleans work as well
        (False, CUDA, 80 * GIB, False),
    ],
)
def test_when_the_set_goes_on_the_device(mode, device, free, expected):
    assert use_device_cache(mode, device, 1 * GIB, free) is expected


def test_device_cache_true_on_a_full_device_names_the_key_and_the_way_out():
    with pytest.raises(
        ValueError, match=r"needs 6\.00 GiB on cuda:0 but only 2\.00 GiB.*device_cache=false"
    ):
        use_device_cache("true", CUDA, 6 * GIB, 2 * GIB)
    with pytest.raises(
        ValueError, match=r"data\.device_cache must be one of auto, true, false; got 'yes'"
    ):
        use_device_cache("yes", CPU, 1, None)


def test_device_fed_loader_yields_positions_and_the_same_training_batch(tiny_data):
    # the online degradation (paired host crops are another RNG stream: tests/test_paired.py)
    host = make_datamodule(tiny_data, device_cache="false", degradation="online")
    device = make_datamodule(tiny_data, device_cache="true", num_workers=2)
    host_loader, device_loader = host.train_dataloader(), device.train_dataloader()
    assert not host.device_fed and device.device_fed
    assert device_loader.num_workers == 0  # positions need no workers
    torch.manual_seed(7)
    host_batch = host.on_after_batch_transfer(next(iter(host_loader)), 0)
    torch.manual_seed(7)
    rows = next(iter(device_loader))
    assert rows.dtype == torch.int64 and rows.shape == (4, 3)
    device_batch = device.on_after_batch_transfer(rows, 0)
    for key in ("hr", "lr"):
        assert torch.equal(host_batch[key], device_batch[key])


def test_training_from_the_device_cache_matches_host_fed_training(
    tiny_data, compose_train, tmp_path
):
    """Same seed, same crops, same augmentation draws: the same weights after two epochs."""
    weights = []
    for mode in ("false", "true"):
        cfg = compose_train(
            *tiny_overrides(tiny_data),
            "scale=2",
            "seed=5",
            f"data.device_cache={mode}",
            "data.degradation=online",
        )
        cfg.paths.output_dir = str(tmp_path / mode)
        train(cfg)
        ckpt = torch.load(tmp_path / mode / "checkpoints" / "last.ckpt", weights_only=True)
        weights.append(ckpt["state_dict"])
    host, device = weights
    assert host.keys() == device.keys()
    for key in host:
        torch.testing.assert_close(device[key], host[key], rtol=0, atol=0, msg=key)
