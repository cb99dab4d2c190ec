"""``degradation=`` in sr-eval and the data module: RDN's Table 3 bicubic BD / DN baselines,
seeded training batches whose counter is part of the checkpoint (issue #25)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from sr_lightning.apps.eval import evaluate
from sr_lightning.common.color import to_luma_uint8
from sr_lightning.data.datamodule import SRDataModule

# RDN (Zhang et al., CVPR'18) Table 3, Bicubic row, Set5 x3: BD 28.78 / 0.8308, DN 24.01 / 0.5369
RDN_BICUBIC_SET5_X3 = {"bd": (28.78, 0.015), "dn": (24.01, 0.1)}


@pytest.mark.parametrize("name", ["bd", "dn"])
def test_sr_eval_reproduces_rdn_bicubic_baselines(data_dir, compose_train, tmp_path, name):
    def run(n: int) -> dict:
        cfg = compose_train(
            "model=bicubic",
            "scale=3",
            "channels=3",
            f"degradation={name}",
            "data.test_sets=[Set5]",
            f"paths.data_dir={data_dir}",
            config_name="eval",
        )
        cfg.paths.output_dir = str(tmp_path / f"eval_{n}")
        return evaluate(cfg)["Set5"]

    published, tolerance = RDN_BICUBIC_SET5_X3[name]
    first = run(0)
    assert abs(first["psnr_y"] - published) <= tolerance, first
    assert run(1) == first  # DN's evaluation noise is fixed: the same LR in every run


def test_luma_bicubic_under_bd_is_rdns_table_on_set5_and_set14(data_dir, compose_train, tmp_path):
    """Bicubic of the BD LR's luma (the scoring of a luma model's baseline) gives RDN's Table 3
    bicubic BD cells, PSNR and SSIM, on both sets (Set14 holds a grey image: bridge)."""
    cfg = compose_train(
        "model=bicubic",
        "scale=3",
        "channels=1",
        "degradation=bd",
        "data.test_sets=[Set5,Set14]",
        f"paths.data_dir={data_dir}",
        config_name="eval",
    )
    cfg.paths.output_dir = str(tmp_path / "eval")
    results = evaluate(cfg)
    for name, (psnr, ssim) in {"Set5": (28.78, 0.8308), "Set14": (26.38, 0.7271)}.items():
        assert abs(results[name]["psnr_y"] - psnr) <= 0.01, results[name]
        assert abs(results[name]["ssim_y"] - ssim) <= 0.0005, results[name]


def _module(tiny_data, lr_model) -> SRDataModule:
    dm = SRDataModule(
        str(tiny_data), ["train"], ["val"], scale=3, channels=1, patch_size=24, lr_model=lr_model
    )
    dm.setup("fit")
    return dm


def test_training_batches_are_seeded_by_position_and_resume(tiny_data):
    dm = _module(tiny_data, {"name": "dn", "sigma": 30})
    # BD / DN degrade RGB: the sets are kept in RGB, batches come out in luma
    assert dm.train_set.images[0].shape[0] == 3
    hr = torch.stack([dm.train_set.images[i][:, :24, :24] for i in range(4)])
    dm.augment = {"hflip": False, "vflip": False, "rot90": False}
    first = dm.make_train_batch(hr)
    assert first["lr"].shape == (4, 1, 8, 8) and first["hr"].shape == (4, 1, 24, 24)
    assert torch.equal(first["hr"], to_luma_uint8(hr).float() / 255)
    second = dm.make_train_batch(hr)
    assert not torch.equal(first["lr"], second["lr"])  # fresh noise per batch
    state = dm.state_dict()
    third = dm.make_train_batch(hr)
    resumed = _module(tiny_data, {"name": "dn", "sigma": 30})
    resumed.augment = dm.augment
    resumed.load_state_dict(state)
    assert torch.equal(resumed.make_train_batch(hr)["lr"], third["lr"])
    replay = _module(tiny_data, "dn")
    replay.augment = dm.augment
    assert torch.equal(replay.make_train_batch(hr)["lr"], first["lr"])


def test_eval_batches_use_the_degradation_and_paired_is_refused(tiny_data):
    dm = _module(tiny_data, "bd")
    image = dm.val_sets[0].images[0]
    batch = dm.make_eval_batch({"hr": image.unsqueeze(0), "name": "a", "index": 0})
    assert batch["hr"].shape[1] == 1 and batch["lr"].shape[1] == 1
    assert torch.equal(batch["lr"] * 255, (batch["lr"] * 255).round())  # 8-bit LR
    dm.degradation = "paired"
    with pytest.raises(ValueError, match=r"degradation=bd needs data\.degradation=online"):
        dm.train_dataloader()


def test_a_held_out_grey_training_image_is_validated_as_grey(tiny_data):
    """data.val_holdout takes validation images from the training folders: under BD they are
    still decoded as the files hold them, as in any evaluation set, not replicated to RGB."""
    from tests.helpers.data import write_images

    write_images(tiny_data / "grey", [(36, 33)], mode="L", seed=3)[0].rename(
        tiny_data / "train" / "img_999.png"  # last in name order: the held-out one
    )
    dm = SRDataModule(
        str(tiny_data), ["train"], [], scale=3, channels=1, patch_size=24, lr_model="bd",
        val_holdout=1,
    )  # fmt: skip
    dm.setup("fit")
    (holdout,) = dm.val_sets
    assert holdout.names == ["train/img_999"] and holdout.images[0].shape[0] == 1
    assert len(dm.train_set) == 6 and dm.train_set.images[0].shape[0] == 3


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", ["bd", "dn"])
def test_a_grey_image_gets_the_same_lr_and_scores_in_validation_and_sr_eval(
    tiny_data, compose_train, tmp_path, name, channels
):
    """A grey HR file is degraded as grey in both (validation used to replicate it to RGB
    first: another luma under BD, independent noise per channel under DN)."""
    from sr_lightning.core.metrics import score_images
    from sr_lightning.data.degradation import bicubic_upscale
    from tests.helpers.data import write_images
    from tests.helpers.references import bd_reference

    (grey,) = write_images(tiny_data / "mixed", [(33, 30)], mode="L", seed=3)
    write_images(tiny_data / "mixed" / "c", [(36, 27)], seed=4)
    (tiny_data / "mixed" / "c" / "img_000.png").rename(tiny_data / "mixed" / "colour.png")
    dm = SRDataModule(
        str(tiny_data),
        ["train"],
        ["mixed"],
        scale=3,
        channels=channels,
        patch_size=24,
        lr_model=name,
    )
    dm.setup("fit")
    batches = {b["name"]: dm.make_eval_batch(b) for b in dm.val_dataloader()[0]}

    cfg = compose_train(
        "model=bicubic",
        "scale=3",
        f"channels={channels}",
        f"degradation={name}",
        "data.test_sets=[mixed]",
        f"paths.data_dir={tiny_data}",
        config_name="eval",
    )
    cfg.paths.output_dir = str(tmp_path / "eval")
    evaluate(cfg)
    with open(tmp_path / "eval" / "per_image.csv") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(batches) == ["colour", "img_000"]
    for image, batch in batches.items():
        scores = score_images(bicubic_upscale(batch["lr"], 3), batch["hr"], 3)
        ((psnr, ssim),) = scores.rows()
        assert psnr == pytest.approx(float(rows[image]["psnr_y"]), abs=1e-9), image
        assert ssim == pytest.approx(float(rows[image]["ssim_y"]), abs=1e-9), image

    lr = batches["img_000"]["lr"][0]
    assert lr.shape[0] == channels
    assert torch.equal(lr[0], lr[-1])  # grey stays grey: one noise field, not three
    if name == "bd":  # the BD of the grey plane itself (RDN's MATLAB definitions, in numpy)
        with Image.open(grey) as im:
            plane = np.asarray(im)[None]
        expected = torch.from_numpy(bd_reference(plane, 3)[0]).float() / 255
        assert torch.equal(lr[0], expected)


def test_the_report_sets_bd_and_dn_runs_beside_rdns_rows_of_their_setting(tmp_path):
    """With the built-in table, a BD run's section holds RDN's BD SRCNN row (32.05), never
    the BI one (VDSR's 32.75), and the DN section RDN's DN row."""
    from sr_lightning.apps.report import markdown_table
    from sr_lightning.apps.report_common import Run
    from sr_lightning.core.published import load_published

    def run(setting: str, psnr: float) -> Run:
        results = {"Set5": {"psnr_y": psnr, "ssim_y": 0.9}}
        return Run(tmp_path / setting, setting, "espcn", 3, results, degradation=setting)

    md = markdown_table([run("bd", 32.45), run("dn", 27.28)], load_published())
    sections = {b.partition("\n")[0]: b for b in md.split("\n## ")[1:]}
    assert sorted(sections) == ["×3, BD", "×3, DN"]
    assert "| SRCNN | paper (RDN) | – | 32.05 / 0.8944 |" in sections["×3, BD"]
    assert "| SRCNN | paper (RDN) | – | 25.01 / 0.6950 |" in sections["×3, DN"]
    assert "32.75" not in md and "28.78" in sections["×3, BD"]
