"""The data module: patches, device-side degradation, colour spaces, evaluation sets."""

from __future__ import annotations

import math

import pytest
import torch

from sr_lightning.data.datamodule import UnpaddedDistributedSampler
from sr_lightning.data.datasets import EvalDataset, ImageSet, PatchDataset, convert_channels
from sr_lightning.data.imresize import imresize
from tests.helpers.data import make_datamodule, write_images

make_dm = make_datamodule


def test_train_batch_shapes_and_lr_is_rounded_bicubic(tiny_data):
    dm = make_dm(
        tiny_data, augment={"hflip": False, "vflip": False, "rot90": False}, degradation="online"
    )
    hr_uint8 = next(iter(dm.train_dataloader()))
    assert hr_uint8.dtype == torch.uint8 and hr_uint8.shape == (4, 3, 16, 16)
    batch = dm.on_after_batch_transfer(hr_uint8, 0)
    assert batch["scale"] == 2
    assert batch["hr"].shape == (4, 3, 16, 16) and batch["lr"].shape == (4, 3, 8, 8)
    torch.testing.assert_close(batch["hr"], hr_uint8.float() / 255)
    # training LR = 8-bit rounding of the MATLAB bicubic downscale, as the papers' LR PNGs
    expected = (imresize(hr_uint8.float() / 255, 0.5).clamp(0, 1) * 255).round() / 255
    torch.testing.assert_close(batch["lr"], expected)
    assert torch.equal(batch["lr"] * 255, (batch["lr"] * 255).round())


def test_augmentation_gives_dihedral_transforms_of_the_patch():
    torch.manual_seed(0)
    patch = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    from sr_lightning.data.degradation import random_dihedral

    out = random_dihedral(patch)
    base = patch[0, 0]
    variants = []
    for t in (False, True):
        for k in range(4):
            variants.append(torch.rot90(base.T if t else base, k))
    seen = {i for s in out[:, 0] for i, v in enumerate(variants) if torch.equal(s, v)}
    assert all(any(torch.equal(s, v) for v in variants) for s in out[:, 0])
    assert len(seen) >= 6  # 64 draws over 8 transforms: all but astronomically unlikely


def test_luma_models_see_matlab_y_and_grey_images_are_their_own_luma():
    rgb = torch.tensor([[[255]], [[0]], [[0]]], dtype=torch.uint8)  # pure red
    y = convert_channels(rgb, 1)
    assert y.shape == (1, 1, 1)
    assert y.item() == round(16 + 65.481)  # MATLAB rgb2ycbcr on uint8: 81
    grey = torch.tensor([[[200]]], dtype=torch.uint8)
    assert convert_channels(grey, 1).item() == 200
    assert convert_channels(grey, 3).shape == (3, 1, 1)


def test_patch_size_must_be_a_multiple_of_every_scale(tiny_data):
    with pytest.raises(ValueError, match=r"patch_size=17.*multiple of 2"):
        make_dm(tiny_data, patch_size=17)
    with pytest.raises(ValueError, match="multiple of 12"):
        make_dm(tiny_data, patch_size=16, scales=[2, 3, 4])


def test_multiscale_batches_carry_one_scale(tiny_data):
    torch.manual_seed(0)
    dm = make_dm(tiny_data, patch_size=24, scales=[2, 3, 4], channels=1)
    seen = set()
    for _ in range(30):
        batch = dm.make_train_batch(torch.randint(0, 256, (4, 1, 24, 24), dtype=torch.uint8))
        s = batch["scale"]
        seen.add(s)
        assert batch["lr"].shape[-1] * s == 24 and batch["lr"].shape[-2] * s == 24
    assert seen == {2, 3, 4}


def test_small_images_are_skipped_or_rejected():
    images = ImageSet(
        "t",
        ["big", "small"],
        [torch.zeros(3, 20, 20, dtype=torch.uint8), torch.zeros(3, 8, 30, dtype=torch.uint8)],
    )
    assert len(PatchDataset(images, 16, patches_per_image=3)) == 3
    with pytest.raises(ValueError, match=r"small.*smaller than data.patch_size=16"):
        PatchDataset(images, 16, small="error")


def test_eval_images_are_modcropped_and_lr_is_unrounded(tiny_data):
    dm = make_dm(tiny_data, scale=3, patch_size=15)
    (loader,) = dm.val_dataloader()
    batch = dm.on_after_batch_transfer(next(iter(loader)), 0)
    h, w = batch["hr"].shape[-2:]
    assert h % 3 == 0 and w % 3 == 0 and (h, w) == (36, 48)  # 48x36 stays, 40x40 -> 39x39
    torch.testing.assert_close(batch["lr"], imresize(batch["hr"], 1 / 3))
    assert batch["name"] == "img_000" and dm.val_set_names == ["val"]


def test_holdout_split_comes_first_and_leaves_training(tiny_data):
    dm = make_dm(tiny_data, val_holdout=2)
    assert [s.name for s in dm.val_sets] == ["holdout", "val"]
    assert len(dm.train_set) == 4 and len(dm.val_sets[0]) == 2
    assert dm.val_set_names == ["holdout", "val"]


@pytest.mark.parametrize("n,world", [(5, 2), (14, 4), (3, 3), (1, 2)])
def test_unpadded_sampler_covers_each_image_once(n, world):
    dataset = list(range(n))
    shards = [list(UnpaddedDistributedSampler(dataset, world, r)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == dataset
    assert [len(UnpaddedDistributedSampler(dataset, world, r)) for r in range(world)] == [
        len(s) for s in shards
    ]
    assert max(map(len, shards)) == math.ceil(n / world)


def test_missing_folder_is_a_clear_error(tmp_path):
    write_images(tmp_path / "train", [(32, 32)])
    with pytest.raises(FileNotFoundError, match="Set5"):
        make_dm(tmp_path, val_sets=["Set5"])


def test_eval_dataset_names_and_indices():
    images = ImageSet("s", ["a", "b"], [torch.zeros(1, 10, 11, dtype=torch.uint8)] * 2)
    item = EvalDataset(images, 4)[1]
    assert item["hr"].shape == (1, 8, 8) and item["index"] == 1 and item["name"] == "b"
