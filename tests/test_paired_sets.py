"""Paired LR/HR sets (issue #25): ``{name, hr: DIR, lr: DIR}`` entries of ``data.train_sets``,
``val_sets`` and ``test_sets`` whose LR images are used as given, paired by file stem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_lightning.apps.eval import evaluate
from sr_lightning.common.errors import UserError
from sr_lightning.core.metrics import score_images
from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.datasets import load_set, pair_files
from sr_lightning.data.degradation import bicubic_upscale
from tests.helpers.data import write_images


def nearest_lr(hr_dir: Path, lr_dir: Path, scale: int, suffix: str = "") -> None:
    """LR files that no degradation= setting makes: every scale-th pixel of the modcropped HR."""
    lr_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(hr_dir.glob("*.png")):
        hr = np.asarray(Image.open(path))
        h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
        Image.fromarray(hr[:h:scale, :w:scale]).save(lr_dir / f"{path.stem}{suffix}.png")


@pytest.fixture
def paired_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_images(root / "HR", [(64, 50), (61, 60), (72, 56)])  # odd sides: modcropped
    nearest_lr(root / "HR", root / "LR", 2, suffix="x2")  # DIV2K's names: img_000x2.png
    write_images(root / "val_HR", [(40, 36), (38, 40)], seed=1)
    nearest_lr(root / "val_HR", root / "val_LR", 2)
    return root


def test_pairing_is_by_stem_with_divk2s_scale_suffix(tmp_path):
    hr = [tmp_path / "HR" / f"{n}.png" for n in ("0801", "0802")]
    lr = [tmp_path / "LR" / "0802.png", tmp_path / "LR" / "0801x4.png"]
    assert pair_files(hr, lr, 4) == [(hr[0], lr[1]), (hr[1], lr[0])]
    with pytest.raises(UserError, match=r"HR image .*0802\.png has no LR partner"):
        pair_files(hr, lr[1:], 4)
    with pytest.raises(UserError, match=r"LR image .*0803x4\.png has no HR partner"):
        pair_files(hr, [*lr, tmp_path / "LR" / "0803x4.png"], 4)
    with pytest.raises(UserError, match=r"0801x4\.png and .*0801\.png both pair"):
        pair_files(hr, [*lr, tmp_path / "LR" / "0801.png"], 4)


def test_a_mis_sized_lr_is_one_error_naming_both_files(paired_root):
    Image.new("RGB", (20, 25)).save(paired_root / "LR" / "img_001x2.png")  # HR 61x60 -> 30x30
    spec = {"name": "mine", "hr": str(paired_root / "HR"), "lr": str(paired_root / "LR")}
    with pytest.raises(UserError) as info:
        load_set(spec, paired_root, 3, scale=2)
    message = str(info.value)
    assert "img_001x2.png (20x25)" in message and "img_001.png (61x60)" in message


@pytest.mark.parametrize("channels", [1, 3])
def test_sr_eval_scores_the_given_lr(paired_root, compose_train, tmp_path, channels):
    def run(test_set: str) -> dict:
        cfg = compose_train(
            "model=bicubic",
            "scale=2",
            f"channels={channels}",
            f"data.test_sets=[{test_set}]",
            f"paths.data_dir={paired_root}",
            config_name="eval",
        )
        cfg.paths.output_dir = str(tmp_path / f"eval_{len(list(tmp_path.iterdir()))}")
        return evaluate(cfg)

    paired = run(f"{{name:mine,hr:{paired_root / 'HR'},lr:LR}}")["mine"]
    # the reference: bicubic upscale of each given LR file against its modcropped HR
    expected = []
    for i in range(3):
        hr = np.array(Image.open(paired_root / "HR" / f"img_{i:03d}.png"))
        lr = np.array(Image.open(paired_root / "LR" / f"img_{i:03d}x2.png"))
        hr = hr[: 2 * lr.shape[0], : 2 * lr.shape[1]]
        as_float = [torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255 for a in (hr, lr)]
        sr = bicubic_upscale(as_float[1], 2)
        expected.append(score_images(sr, as_float[0], 2).rows()[0][0])
    assert paired["images"] == 3
    if channels == 3:  # RGB: the Y of the RGB output, as for every RGB set
        assert paired["psnr_y"] == pytest.approx(np.mean(expected), abs=1e-6)
    hr_only = run("HR")["HR"]  # the same HR, LR made by the bicubic degradation
    assert hr_only["psnr_y"] > paired["psnr_y"] + 0.5  # nearest-neighbour LR scores lower


def test_training_and_validation_use_the_given_lr(paired_root):
    def spec(prefix: str) -> dict:
        hr, lr = paired_root / f"{prefix}HR", paired_root / f"{prefix}LR"
        return {"name": prefix, "hr": str(hr), "lr": str(lr)}

    dm = SRDataModule(
        str(paired_root),
        [spec("")],
        [spec("val_")],
        scale=2,
        channels=3,
        patch_size=16,
        batch_size=4,
        patches_per_image=2,
        augment={"hflip": False, "vflip": False, "rot90": False},
    )
    dm.setup("fit")
    assert dm.val_set_names == ["val_"]
    batch = next(iter(dm.train_dataloader()))
    assert dm.paired
    lr, hr = batch["lr"], batch["hr"]
    assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 16, 16)
    # a training LR crop is the given LR at the HR crop's place: every 2nd HR pixel here
    assert torch.equal(lr, hr[..., ::2, ::2])
    (val,) = dm.val_dataloader()
    item = dm.on_after_batch_transfer(next(iter(val)), 0)
    assert torch.equal(item["lr"], item["hr"][..., ::2, ::2])


def test_paired_training_sets_are_all_paired(paired_root):
    pair = {"name": "p", "hr": str(paired_root / "HR"), "lr": str(paired_root / "LR")}
    dm = SRDataModule(str(paired_root), [pair, "val_HR"], [], scale=2, channels=3, patch_size=16)
    with pytest.raises(UserError, match="mixes paired sets"):
        dm.setup("fit")
