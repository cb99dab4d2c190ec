"""sr-eval: the papers' bicubic numbers, agreement with training's validation, the three ways
to give a model, the outputs, TTA and the refusal of untrusted files."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from sr_lightning.apps.eval import dihedral_ensemble, evaluate, sr_image
from sr_lightning.apps.export import export_generator
from sr_lightning.apps.train import train
from sr_lightning.common.color import rgb_to_ycbcr
from sr_lightning.core.model_files import resolve_model
from sr_lightning.core.registry import UnsafeFileError
from sr_lightning.data.degradation import bicubic_upscale, degrade_eval
from sr_lightning.data.imresize import imresize
from tests.helpers.config import tiny_overrides
from tests.helpers.data import write_images

# VDSR (CVPR'16) Table 3, bicubic rows, as in tests/test_bicubic_parity.py
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
}


@pytest.fixture
def compose_eval(compose_train, tmp_path):
    """conf/eval.yaml with overrides; outputs in tmp_path/eval, then eval_1, eval_2, … (one run
    dir per evaluation: sr-eval keeps an earlier run's results.json)."""
    runs = iter(range(1_000))

    def _compose(*overrides: str):
        cfg = compose_train(*overrides, config_name="eval")
        n = next(runs)
        cfg.paths.output_dir = str(tmp_path / (f"eval_{n}" if n else "eval"))
        return cfg

    return _compose


def read_per_image(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "per_image.csv") as f:
        return list(csv.DictReader(f))


def check_per_image_agrees(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    rows = read_per_image(run_dir)
    assert {r["set"] for r in rows} == set(results)
    for name, values in results.items():
        assert set(values) == {"psnr_y", "ssim_y", "images"}
        mine = [r for r in rows if r["set"] == name]
        assert len(mine) == values["images"]
        assert math.fsum(float(r["psnr_y"]) for r in mine) / len(mine) == pytest.approx(
            values["psnr_y"], abs=1e-9
        )
        assert math.fsum(float(r["ssim_y"]) for r in mine) / len(mine) == pytest.approx(
            values["ssim_y"], abs=1e-12
        )


# -- the bicubic baseline reproduces the papers -------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_matches_the_published_table(data_dir, compose_eval, tmp_path, scale):
    cfg = compose_eval(
        "model=bicubic",
        f"scale={scale}",
        f"paths.data_dir={data_dir}",
        "data.test_sets=[Set5,Set14]",
    )
    results = evaluate(cfg)
    assert results["Set5"]["images"] == 5 and results["Set14"]["images"] == 14
    for name in ("Set5", "Set14"):
        psnr, ssim = PUBLISHED_BICUBIC[(name, scale)]
        assert abs(results[name]["psnr_y"] - psnr) <= 0.01, (name, results[name])
        assert abs(results[name]["ssim_y"] - ssim) <= 0.001, (name, results[name])
    # Set5 to the printed precision (tests/test_bicubic_parity.py explains Set14's gap)
    assert round(results["Set5"]["psnr_y"], 2) == PUBLISHED_BICUBIC[("Set5", scale)][0]
    assert round(results["Set5"]["ssim_y"], 4) == PUBLISHED_BICUBIC[("Set5", scale)][1]
    check_per_image_agrees(tmp_path / "eval")
    info = json.loads((tmp_path / "eval" / "run_info.json").read_text())
    assert (info["method"], info["scale"], info["channels"], info["params"]) == (
        "bicubic",
        scale,
        1,
        0,
    )


def test_the_console_script_runs_and_skips_missing_sets(data_dir, tmp_path):
    exe = Path(sys.executable).with_name("sr-eval")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "sr_lightning.apps.eval"]
    run_dir = tmp_path / "cli"
    proc = subprocess.run(
        [
            *command,
            "model=bicubic",
            "scale=3",
            "data.test_sets=[Set5,NoSuchSet]",
            f"paths.data_dir={data_dir}",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "NoSuchSet" in output and "skipped" in output
    results = json.loads((run_dir / "results.json").read_text())
    assert list(results) == ["Set5"]
    assert round(results["Set5"]["psnr_y"], 2) == 30.39
    assert "30.39" in output  # the console table
    check_per_image_agrees(run_dir)


# -- agreement with training --------------------------------------------------------------------


@pytest.fixture
def trained_run(tiny_data, compose_train, tmp_path) -> tuple[Path, dict[str, float]]:
    """A two-epoch ESPCN x3 run on tiny images: its last.ckpt and its last logged val metrics."""
    cfg = compose_train(*tiny_overrides(tiny_data), "trainer.max_epochs=2")
    train(cfg)
    run = tmp_path / "run"
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/psnr")]
    last = rows[-1]
    return run / "checkpoints" / "last.ckpt", {k: float(last[k]) for k in ("val/psnr", "val/ssim")}


def test_a_checkpoint_reproduces_the_val_psnr_training_logged(
    trained_run, tiny_data, compose_eval, tmp_path
):
    ckpt, logged = trained_run
    cfg_args = (f"ckpt_path={ckpt}", f"paths.data_dir={tiny_data}", "data.test_sets=[val]")
    results = evaluate(compose_eval(*cfg_args))
    assert results["val"]["images"] == 2
    assert results["val"]["psnr_y"] == pytest.approx(logged["val/psnr"], abs=1e-6)
    assert results["val"]["ssim_y"] == pytest.approx(logged["val/ssim"], abs=1e-8)
    info = json.loads((tmp_path / "eval" / "run_info.json").read_text())
    assert (info["method"], info["scale"], info["channels"], info["params"]) == (
        "espcn",
        3,
        1,
        22729,
    )
    # tiled through sr_lightning.core.inference (the hook for very large images): the same numbers
    tiled = evaluate(compose_eval(*cfg_args, "tile=16"))["val"]
    assert tiled["psnr_y"] == pytest.approx(results["val"]["psnr_y"], abs=1e-6)
    # the same generator as exported weights (safetensors with metadata, no model=) agrees
    state = torch.load(ckpt, weights_only=True)
    net = {k[4:]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    meta = {
        "method": "espcn",
        "scale": "3",
        "channels": "1",
        "net": json.dumps(state["hyper_parameters"]["net"]),
    }
    save_file(net, tmp_path / "espcn.safetensors", metadata=meta)
    cfg = compose_eval(
        f"weights={tmp_path / 'espcn.safetensors'}",
        f"paths.data_dir={tiny_data}",
        "data.test_sets=[val]",
    )
    assert evaluate(cfg)["val"]["psnr_y"] == pytest.approx(results["val"]["psnr_y"], abs=1e-9)
    # and as a plain .pt state dict with model=espcn
    torch.save(net, tmp_path / "espcn.pt")
    cfg = compose_eval(
        "model=espcn",
        "scale=3",
        f"weights={tmp_path / 'espcn.pt'}",
        f"paths.data_dir={tiny_data}",
        "data.test_sets=[val]",
    )
    assert evaluate(cfg)["val"]["psnr_y"] == pytest.approx(results["val"]["psnr_y"], abs=1e-9)
    # and as the ONNX file sr-export writes (sr-upscale's files are sr-eval's): onnxruntime's
    # float rounding may move a pixel by one level, which moves the PSNR by far less than 0.01
    onnx_file = export_generator(resolve_model(ckpt_path=ckpt), tmp_path / "espcn.onnx", "onnx")
    cfg = compose_eval(
        f"weights={onnx_file}", f"paths.data_dir={tiny_data}", "data.test_sets=[val]"
    )
    assert evaluate(cfg)["val"]["psnr_y"] == pytest.approx(results["val"]["psnr_y"], abs=0.01)


def test_overrides_that_contradict_the_checkpoint_are_errors(trained_run, tiny_data, compose_eval):
    ckpt, _ = trained_run
    common = (f"ckpt_path={ckpt}", f"paths.data_dir={tiny_data}", "data.test_sets=[val]")
    with pytest.raises(ValueError, match=r"is espcn x3 luma; you asked scale=4"):
        evaluate(compose_eval(*common, "scale=4"))
    with pytest.raises(ValueError, match=r"you asked channels=3"):
        evaluate(compose_eval(*common, "channels=3"))
    with pytest.raises(ValueError, match=r"you asked model=vdsr"):
        evaluate(compose_eval(*common, "model=vdsr"))
    with pytest.raises(ValueError, match="model=bicubic has no weights"):
        evaluate(compose_eval(*common, "model=bicubic"))


def test_weights_of_the_wrong_shape_list_the_mismatches(tiny_data, compose_eval, tmp_path):
    from sr_lightning.nets import ESPCN

    torch.save(ESPCN(scale=4).state_dict(), tmp_path / "espcn_x4.pt")
    cfg = compose_eval(
        "model=espcn",
        "scale=3",
        f"weights={tmp_path / 'espcn_x4.pt'}",
        f"paths.data_dir={tiny_data}",
        "data.test_sets=[val]",
    )
    with pytest.raises(
        ValueError, match=r"body\.conv3\.weight \(16, 32, 3, 3\) vs \(9, 32, 3, 3\)"
    ):
        evaluate(cfg)


def test_a_malicious_checkpoint_is_refused_through_sr_eval(tiny_data, compose_eval, tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "pwned"),))

    torch.save({"state_dict": {}, "sr_lightning": Payload()}, tmp_path / "evil.ckpt")
    for key in ("ckpt_path", "weights"):
        cfg = compose_eval(
            f"{key}={tmp_path / 'evil.ckpt'}",
            "model=espcn" if key == "weights" else "scale=3",
            f"paths.data_dir={tiny_data}",
            "data.test_sets=[val]",
        )
        with pytest.raises(UnsafeFileError, match="possibly malicious"):
            evaluate(cfg)
    assert not (tmp_path / "pwned").exists()


# -- model and set selection ----------------------------------------------------------------


def test_model_choice_errors_are_clear(tiny_data, compose_eval):
    data = (f"paths.data_dir={tiny_data}", "data.test_sets=[val]")
    with pytest.raises(ValueError, match="no model to evaluate"):
        evaluate(compose_eval(*data))
    with pytest.raises(ValueError, match="needs a scale"):
        evaluate(compose_eval("model=bicubic", *data))
    with pytest.raises(ValueError, match="needs trained weights"):
        evaluate(compose_eval("model=espcn", "scale=3", *data))
    with pytest.raises(ValueError, match="either ckpt_path= or weights="):
        evaluate(compose_eval("ckpt_path=a.ckpt", "weights=b.pt", *data))


def test_missing_sets_are_skipped_and_none_left_is_an_error(tiny_data, compose_eval, caplog):
    base = ("model=bicubic", "scale=2", f"paths.data_dir={tiny_data}")
    results = evaluate(compose_eval(*base, "data.test_sets=[nope,val]"))
    assert list(results) == ["val"]
    assert any("nope" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    with pytest.raises(FileNotFoundError, match=r"none of data\.test_sets was found"):
        evaluate(compose_eval(*base, "data.test_sets=[nope,nada]"))
    with pytest.raises(ValueError, match=r"data\.test_sets is empty"):
        evaluate(compose_eval(*base, "data.test_sets=[]"))


def test_a_corrupt_image_is_named_or_skipped(tiny_data, compose_eval):
    (tiny_data / "val" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    base = ("model=bicubic", "scale=2", f"paths.data_dir={tiny_data}", "data.test_sets=[val]")
    with pytest.raises(ValueError, match=r"broken\.png"):
        evaluate(compose_eval(*base))
    assert evaluate(compose_eval(*base, "data.skip_bad=true"))["val"]["images"] == 2


# -- saved images -----------------------------------------------------------------------------


def test_saved_luma_images_get_their_colour_from_bicubic(tiny_data, compose_eval, tmp_path):
    """Luma bicubic + chroma bicubic is (up to 8-bit rounding) the RGB bicubic image."""
    write_images(tiny_data / "mixed", [(36, 30)], mode="L", seed=3)  # img_000: grey
    write_images(tiny_data / "mixed" / "c", [(33, 27)], seed=4)
    (tiny_data / "mixed" / "c" / "img_000.png").rename(tiny_data / "mixed" / "colour.png")
    cfg = compose_eval(
        "model=bicubic",
        "scale=3",
        "save_images=true",
        f"paths.data_dir={tiny_data}",
        "data.test_sets=[mixed]",
    )
    evaluate(cfg)
    out = tmp_path / "eval" / "images" / "mixed"
    assert sorted(p.name for p in out.iterdir()) == ["colour.png", "img_000.png"]

    with Image.open(tiny_data / "mixed" / "colour.png") as im:
        hr = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)[:, :27, :33]
    with Image.open(out / "colour.png") as im:
        assert im.mode == "RGB" and im.size == (33, 27)
        saved = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    reference = imresize(imresize(hr[None].double() / 255, 1 / 3), 3)[0]
    diff = (saved.double() / 255 - reference.clamp(0, 1)).abs() * 255
    assert diff.mean() < 0.6 and diff.max() <= 2.5
    with Image.open(out / "img_000.png") as im:
        assert im.mode == "L" and im.size == (36, 30)


def test_luma_models_get_y_from_the_net_and_cbcr_from_bicubic():
    """sr_image on a colour HR: luma = the net's Y, chroma = bicubic chroma of the RGB LR."""
    torch.manual_seed(0)
    grey = torch.rand(1, 1, 4, 5).repeat(1, 3, 1, 1)
    tint = torch.tensor([0.06, -0.03, 0.02]).view(1, 3, 1, 1)  # low saturation: no clipping
    hr_float = imresize((0.2 + 0.6 * grey + tint).clamp(0, 1), size=(24, 30))
    raw = (hr_float[0] * 255).round().clamp(0, 255).to(torch.uint8)
    sr_y = torch.full((1, 1, 24, 30), 0.6)  # a "net" whose Y has nothing to do with bicubic
    out = sr_image(sr_y, raw, channels=1, scale=3)
    assert out.shape == (3, 24, 30) and out.dtype == torch.uint8
    ycc = rgb_to_ycbcr(out[None].double() / 255)[0] * 255
    assert (ycc[0] - 0.6 * 255).abs().max() <= 1.0
    lr = degrade_eval(raw[None].double() / 255, 3)
    chroma = rgb_to_ycbcr(bicubic_upscale(lr, 3))[0, 1:] * 255
    assert (ycc[1:] - chroma).abs().max() <= 1.0
    # RGB models save their output as is
    rgb = torch.rand(1, 3, 24, 30)
    torch.testing.assert_close(
        sr_image(rgb, raw, channels=3, scale=3), (rgb[0] * 255 + 0.5).floor().to(torch.uint8)
    )


def test_luma_images_under_bd_take_cbcr_from_the_bd_lr_the_net_saw():
    """sr_image under degradation=bd: CbCr from the bicubic upscale of the BD LR (not of the
    BI one), built here from the numpy BD and loop bicubic references and BT.601 written out."""
    from sr_lightning.data.degradations.model import Degradation
    from tests.helpers.references import bd_reference, ref_imresize

    rng = np.random.default_rng(5)
    raw = torch.from_numpy(rng.integers(40, 216, (3, 18, 21), dtype=np.uint8))
    sr_y = torch.full((1, 1, 18, 21), 0.5)
    out = sr_image(sr_y, raw, 1, 3, degradation=Degradation(name="bd"), name="x")

    lr = bd_reference(raw.numpy(), 3).astype(np.float64) / 255  # (3, 6, 7)
    up = np.stack([ref_imresize(c, (18, 21), (3.0, 3.0)) for c in lr]) * 255
    cb = 128 + (-37.797 * up[0] - 74.203 * up[1] + 112.0 * up[2]) / 255
    cr = 128 + (112.0 * up[0] - 93.786 * up[1] - 18.214 * up[2]) / 255
    y = np.full((18, 21), 128.0)  # the net's 0.5, on its 8-bit level
    # MATLAB ycbcr2rgb, the inverse of BT.601 studio range, written out
    r = 255 / 219 * (y - 16) + 255 / 224 * 1.402 * (cr - 128)
    g = (
        255 / 219 * (y - 16)
        - 255 / 224 * (0.114 * 1.772 * (cb - 128) + 0.299 * 1.402 * (cr - 128)) / 0.587
    )
    b = 255 / 219 * (y - 16) + 255 / 224 * 1.772 * (cb - 128)
    expected = np.clip(np.floor(np.stack([r, g, b]) + 0.5), 0, 255)
    assert np.abs(out.numpy().astype(np.float64) - expected).max() <= 1.0
    # the BI LR's chroma (the old image) is visibly different: the test can tell them apart
    bi = sr_image(sr_y, raw, 1, 3)
    assert (bi.double() - out.double()).abs().max() >= 4.0


# -- self-ensemble ----------------------------------------------------------------------------


def test_self_ensemble_undoes_each_transform():
    """A model that adds a column ramp: over the 8 transforms the ramps average to a constant.

    Of the four shape-keeping transforms two see the ramp j and two W-1-j; the four
    transposing ones see i and H-1-i. So the mean is x + (H + W - 2) / 4.
    """
    x = torch.rand(1, 1, 5, 7)

    def model(t: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(t.shape[-1], dtype=t.dtype).expand_as(t)
        return t + ramp

    out = dihedral_ensemble(model, x)
    torch.testing.assert_close(out, x + (5 + 7 - 2) / 4)


def test_self_ensemble_of_bicubic_is_bicubic(tiny_data, compose_eval):
    """MATLAB bicubic is flip/transpose-equivariant, so TTA must not change its numbers."""
    base = ("model=bicubic", "scale=3", f"paths.data_dir={tiny_data}", "data.test_sets=[val]")
    plain = evaluate(compose_eval(*base))["val"]
    tta = evaluate(compose_eval(*base, "tta=true"))["val"]
    assert tta["psnr_y"] == pytest.approx(plain["psnr_y"], abs=1e-3)
    assert tta["ssim_y"] == pytest.approx(plain["ssim_y"], abs=1e-5)
