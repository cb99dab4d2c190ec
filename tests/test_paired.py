"""Paired LR cache: LR computed once per image, aligned LR/HR crops, when a run uses it."""

from __future__ import annotations

import pytest
import torch

from sr_lightning.data.degradation import degrade_train
from sr_lightning.data.imresize import imresize
from sr_lightning.data.paired import PairedPatchDataset, use_paired
from tests.helpers.data import make_datamodule

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def whole_image_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The reference: MATLAB bicubic of the modcropped image, rounded half up to 8 bits."""
    h, w = hr.shape[-2:]
    hr = hr[:, : h - h % scale, : w - w % scale].double() / 255
    return (imresize(hr[None], 1 / scale)[0].clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8)


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for t in (x, x.transpose(-1, -2)):
        out += [t, t.flip(-1), t.flip(-2), t.flip(-1).flip(-2)]
    return out


@pytest.mark.parametrize("augment", [False, True])
def test_pairs_are_aligned_crops_of_the_whole_image_lr(tiny_data, augment) -> None:
    dm = make_datamodule(tiny_data, channels=1, scale=2, patch_size=16)
    flags = {"hflip": augment, "vflip": augment, "rot90": augment}
    ds = PairedPatchDataset(dm.train_set, 16, 2, 3, augment=flags)
    indices = list(range(12))
    torch.manual_seed(0)
    batch = ds.__getitems__(indices)
    torch.manual_seed(0)
    positions = ds.crop_positions(indices).tolist()  # the same first RNG call
    assert batch["lr"].dtype == batch["hr"].dtype == torch.uint8
    assert batch["lr"].shape == (12, 1, 8, 8) and batch["hr"].shape == (12, 1, 16, 16)
    for i, (image, top, left) in enumerate(positions):
        y, x = top // 2, left // 2
        hr = ds.images[image][:, 2 * y : 2 * y + 16, 2 * x : 2 * x + 16]
        lr = whole_image_lr(ds.images[image], 2)[:, y : y + 8, x : x + 8]
        # the same one of the 8 transforms for both halves of the pair (identity without augment)
        matches = [
            k
            for k, (h, low) in enumerate(zip(dihedral(hr), dihedral(lr), strict=True))
            if torch.equal(h, batch["hr"][i]) and torch.equal(low, batch["lr"][i])
        ]
        assert matches and (augment or matches[0] == 0)


def test_crop_of_lr_differs_from_lr_of_crop_only_at_the_patch_border(tiny_data) -> None:
    dm = make_datamodule(tiny_data, channels=1, scale=2, patch_size=16)
    image = dm.train_set.images[0]
    lr = whole_image_lr(image, 2)[:, 4:12, 4:12].float() / 255
    online = degrade_train(image[:, 8:24, 8:24].float()[None] / 255, 2)[0]
    diff = (lr - online).abs() * 255
    # the x2 kernel reaches 2 HR = 1 LR pixel past each side (+1 for the taper)
    assert diff[:, 2:-2, 2:-2].max() <= 1.0
    assert diff.max() > 1.0  # the border sees mirrored pixels instead of the real neighbours


def test_paired_batches_train_and_auto_pairs_only_on_a_cpu_with_one_scale(tiny_data) -> None:
    dm = make_datamodule(tiny_data, degradation="auto")
    raw = next(iter(dm.train_dataloader()))
    assert dm.paired and set(raw) == {"lr", "hr"}
    batch = dm.on_after_batch_transfer(raw, 0)
    assert batch["lr"].shape == (4, 3, 8, 8) and batch["hr"].shape == (4, 3, 16, 16)
    torch.testing.assert_close(batch["lr"], raw["lr"].float() / 255)
    assert use_paired("auto", CPU, [3], device_fed=False)
    assert not use_paired("auto", CUDA, [3], device_fed=False)
    assert not use_paired("auto", CPU, [2, 3, 4], device_fed=False)
    assert not use_paired("online", CPU, [3], device_fed=False)
    assert use_paired("paired", CUDA, [3], device_fed=False)
    with pytest.raises(ValueError, match="one scale"):
        use_paired("paired", CPU, [2, 3], device_fed=False)
    with pytest.raises(ValueError, match=r"data\.device_cache=false"):
        use_paired("paired", CUDA, [3], device_fed=True)
    with pytest.raises(ValueError, match=r"data\.degradation must be one of"):
        use_paired("bicubic", CPU, [3], device_fed=False)
