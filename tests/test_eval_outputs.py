"""``sr-eval outputs=DIR`` (issue #25): precomputed SR images scored with the same protocol
and reports as a model; a missing or mis-sized image is an error naming the file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from sr_lightning.apps.eval import evaluate
from sr_lightning.common.errors import UserError
from tests.helpers.checkpoints import make_checkpoint


def eval_cfg(compose_train, data_dir: Path, out: Path, *overrides: str):
    cfg = compose_train(
        *overrides,
        "data.test_sets=[Set5,Set14]",
        f"paths.data_dir={data_dir}",
        config_name="eval",
    )
    cfg.paths.output_dir = str(out)
    return cfg


def test_scoring_saved_images_equals_evaluating_the_model(data_dir, compose_train, tmp_path):
    ckpt = make_checkpoint(tmp_path / "srresnet.ckpt", "srresnet")  # RGB x2
    model_run = tmp_path / "model"
    by_model = evaluate(
        eval_cfg(compose_train, data_dir, model_run, f"ckpt_path={ckpt}", "save_images=true")
    )
    scored = evaluate(
        eval_cfg(
            compose_train, data_dir, tmp_path / "out", f"outputs={model_run / 'images'}", "scale=2"
        )
    )
    assert scored == by_model  # results.json: every set's PSNR, SSIM and count, exactly
    rows = [(tmp_path / d / "per_image.csv").read_text() for d in ("model", "out")]
    assert rows[0] == rows[1]
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["source"] == "outputs" and info["scale"] == 2
    assert info["degradation"] == "bicubic"
    assert info["bicubic"] == json.loads((model_run / "run_info.json").read_text())["bicubic"]


def test_a_missing_or_mis_sized_image_is_named(data_dir, compose_train, tmp_path):
    outputs = tmp_path / "sr"
    (outputs / "Set5").mkdir(parents=True)
    for hr in sorted((data_dir / "Set5").glob("*.png")):
        w, h = Image.open(hr).size
        Image.new("RGB", (w - w % 2, h - h % 2)).save(outputs / "Set5" / hr.name)
    cfg = eval_cfg(compose_train, data_dir, tmp_path / "a", f"outputs={outputs}", "scale=2")
    cfg.data.test_sets = ["Set5"]
    assert evaluate(cfg)["Set5"]["images"] == 5
    Image.new("RGB", (10, 12)).save(outputs / "Set5" / "bird.png")
    cfg.paths.output_dir = str(tmp_path / "b")
    with pytest.raises(UserError, match=r"SR image .*Set5/bird\.png is 10x12; the HR image .*bird"):
        evaluate(cfg)
    (outputs / "Set5" / "bird.png").unlink()
    with pytest.raises(UserError, match=r"no SR image .*Set5/bird\.png"):
        evaluate(cfg)
    with pytest.raises(UserError, match="drop ckpt_path"):
        evaluate(
            eval_cfg(
                compose_train,
                data_dir,
                tmp_path / "c",
                f"outputs={outputs}",
                "scale=2",
                "ckpt_path=x.ckpt",
            )
        )


def test_a_luma_models_grey_images_score_as_the_model_did(tiny_data, compose_train, tmp_path):
    """A luma model saves a grey HR's output as a grey PNG: outputs= scores it as that luma
    plane (equal to the model's own score), not as replicated RGB (1.32 dB apart)."""
    from tests.helpers.data import write_images

    write_images(tiny_data / "mixed", [(36, 30)], mode="L", seed=3)  # img_000: grey
    write_images(tiny_data / "mixed" / "c", [(33, 27)], seed=4)
    (tiny_data / "mixed" / "c" / "img_000.png").rename(tiny_data / "mixed" / "colour.png")
    ckpt = make_checkpoint(tmp_path / "srcnn.ckpt", "srcnn")  # luma x3

    def run(out: str, *overrides: str) -> dict:
        cfg = compose_train(
            *overrides,
            "degradation=bd",
            "data.test_sets=[mixed]",
            f"paths.data_dir={tiny_data}",
            config_name="eval",
        )
        cfg.paths.output_dir = str(tmp_path / out)
        evaluate(cfg)
        with open(tmp_path / out / "per_image.csv") as f:
            return {row["image"]: row for row in csv.DictReader(f)}

    by_model = run("model", f"ckpt_path={ckpt}", "save_images=true")
    with Image.open(tmp_path / "model" / "images" / "mixed" / "img_000.png") as im:
        assert im.mode == "L"
    scored = run("out", f"outputs={tmp_path / 'model' / 'images'}", "scale=3")
    assert scored["img_000"] == by_model["img_000"]  # PSNR and SSIM, exactly
    assert sorted(scored) == ["colour", "img_000"]  # the colour one: Y of its RGB
