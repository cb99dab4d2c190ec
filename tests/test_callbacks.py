"""Image panels and the per-image table: what they show, when, and where they go."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_lightning.apps.train import train
from sr_lightning.common.color import to_luma_uint8
from sr_lightning.runtime.callbacks import side_by_side
from tests.helpers.config import tiny_overrides


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def epoch_metric(metrics_csv: Path, name: str, epoch: int) -> float:
    """The value of ``name`` logged at ``epoch`` in Lightning's CSV log."""
    rows = [r for r in read_csv(metrics_csv) if r.get(name) and int(r["epoch"]) == epoch]
    assert len(rows) == 1, rows
    return float(rows[0][name])


def test_side_by_side_rounds_like_the_metrics_and_shows_grey_as_grey():
    grey = torch.full((1, 4, 5), 0.5)  # 127.5 rounds half up to 128, as metrics.quantize does
    rgb = torch.zeros(3, 4, 5)
    rgb[0] = 1.0
    panel = side_by_side([grey, rgb], gap=2)
    assert panel.shape == (4, 5 + 2 + 5, 3) and panel.dtype == np.uint8
    assert (panel[:, :5] == 128).all()
    assert (panel[:, 5:7] == 255).all()  # white gap
    assert (panel[:, 7:, 0] == 255).all() and (panel[:, 7:, 1:] == 0).all()


def test_csv_runs_get_png_panels_and_a_per_image_table_matching_the_logged_psnr(
    tiny_data, compose_train, tmp_path
):
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        "scale=2",
        "trainer.max_epochs=3",
        "callbacks.image_panels.every_n_epochs=2",
        "callbacks.image_panels.num_images=1",
    )
    train(cfg)
    images = tmp_path / "run" / "images"
    # every 2nd epoch (index 1) and the last one (index 2), never the first
    assert sorted(p.name for p in images.iterdir()) == ["epoch001", "epoch002"]
    assert sorted(p.name for p in (images / "epoch002").iterdir()) == [
        "per_image.csv",
        "val_img_000.png",
    ]

    # the panel's right third is the HR luma of the validation image (48 x 36, channels=1)
    panel = np.array(Image.open(images / "epoch002" / "val_img_000.png"))
    assert panel.shape == (36, 3 * 48 + 2 * 4, 3)
    source = torch.from_numpy(
        np.array(Image.open(tiny_data / "val" / "img_000.png").convert("RGB"))
    )
    hr_luma = to_luma_uint8(source.permute(2, 0, 1))[0].numpy()
    np.testing.assert_array_equal(panel[:, -48:, 0], hr_luma)
    for third in range(3):
        block = panel[:, third * 52 : third * 52 + 48]
        assert (block[..., 0] == block[..., 1]).all()  # grey shown grey

    # every image once, and the mean over images is the PSNR the module logged
    metrics_csv = tmp_path / "run" / "csv" / "metrics.csv"
    for epoch in (1, 2):
        rows = read_csv(images / f"epoch{epoch:03d}" / "per_image.csv")
        assert [r["image"] for r in rows] == ["img_000", "img_001"]
        for column, metric in (("psnr", "val/psnr"), ("ssim", "val/ssim")):
            mean = np.mean([float(r[column]) for r in rows])
            assert mean == pytest.approx(epoch_metric(metrics_csv, metric, epoch), abs=1e-5)
        bicubic = np.mean([float(r["psnr_bicubic"]) for r in rows])
        assert bicubic == pytest.approx(
            epoch_metric(metrics_csv, "val/psnr_bicubic", epoch), abs=1e-5
        )
        for r in rows:
            assert float(r["gain"]) == pytest.approx(float(r["psnr"]) - float(r["psnr_bicubic"]))


def test_named_images_are_the_ones_shown(tiny_data, compose_train, tmp_path):
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        "scale=2",
        "trainer.max_epochs=1",
        "callbacks.image_panels.images=[img_001]",
        "callbacks.image_panels.table=false",
    )
    train(cfg)
    shown = sorted(p.name for p in (tmp_path / "run" / "images" / "epoch000").iterdir())
    assert shown == ["val_img_001.png"]


def test_tensorboard_gets_the_panels_and_the_table_instead_of_files(
    tiny_data, compose_train, tmp_path
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_train(
        *tiny_overrides(tiny_data), "scale=2", "logger=tensorboard", "trainer.max_epochs=1"
    )
    train(cfg)
    assert not (tmp_path / "run" / "images").exists()
    (events,) = (tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*")
    acc = EventAccumulator(str(events.parent), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert sorted(tags["images"]) == ["val_images/val/img_000", "val_images/val/img_001"]
    (image,) = acc.Images("val_images/val/img_001")
    assert (image.width, image.height) == (3 * 40 + 2 * 4, 40)
    assert "val/per_image/text_summary" in tags["tensors"]
