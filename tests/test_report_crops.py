"""sr-report --crops: the zoomed-crop figure shows the right pixels of the right images, with
each image's own per_image.csv numbers, picks the region where the runs differ, and names a
bad image or region in one error (issue 30)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_lightning.apps.eval import evaluate
from sr_lightning.apps.report import find_runs, main
from sr_lightning.apps.report_crops import Region, crop_figure
from tests.helpers.checkpoints import make_checkpoint
from tests.helpers.report_runs import fake_eval_run, write_hr_set

SET = "Tiny"


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    """A bicubic and an ESPCN run at x3 over two 63x48 noise images (modcrop keeps them)."""
    hr_dir = write_hr_set(tmp_path / "data" / SET, (63, 48))
    rng = np.random.default_rng(5)
    runs = tmp_path / "runs"
    for k, method in enumerate(("bicubic", "espcn")):
        images = {
            p.stem: rng.integers(0, 256, (48, 63, 3), dtype=np.uint8)
            for p in sorted(hr_dir.glob("*.png"))
        }
        scores = {name: (25.0 + k + 0.123 * i, 0.7 + 0.01 * i) for i, name in enumerate(images)}
        fake_eval_run(runs / method, method, 3, SET, hr_dir, images, scores)
    return runs


def _crop_axes(fig) -> list:
    """The crop panels: every axes with a label under it (the overview has none)."""
    return [ax for ax in fig.axes if any(t.get_gid() == "label" for t in ax.texts)]


def _text(ax, gid: str) -> str:
    return next(t.get_text() for t in ax.texts if t.get_gid() == gid)


def test_crops_are_the_source_pixels_with_the_per_image_numbers(two_runs, tmp_path):
    runs = find_runs([two_runs])
    region = Region(x=20, y=9, w=16, h=12)
    fig, tag = crop_figure(runs, SET, "img_001", region)
    assert tag == "x3"
    panels = _crop_axes(fig)
    assert [_text(ax, "label") for ax in panels] == ["HR", "Bicubic", "ESPCN"]
    sources = [
        tmp_path / "data" / SET / "img_001.png",
        two_runs / "bicubic" / "images" / SET / "img_001.png",
        two_runs / "espcn" / "images" / SET / "img_001.png",
    ]
    for ax, source in zip(panels, sources, strict=True):
        shown = np.asarray(ax.images[0].get_array())
        pixels = np.asarray(Image.open(source).convert("RGB"))
        factor = shown.shape[1] // region.w
        assert factor >= 2 and shown.shape == (region.h * factor, region.w * factor, 3)
        for dy, dx in ((0, 0), (3, 7), (11, 15), (5, 0)):
            want = pixels[region.y + dy, region.x + dx]
            # every pixel of the nearest-neighbour block is the source pixel
            block = shown[dy * factor : (dy + 1) * factor, dx * factor : (dx + 1) * factor]
            assert (block == want).all(), (source, dy, dx)
    # the PDF embeds the enlarged crops as they are (no resampling a viewer could smooth)
    fig.savefig(tmp_path / "crops.pdf")
    pdf = (tmp_path / "crops.pdf").read_bytes()
    assert pdf.count(f"/Width {16 * factor} /Height {12 * factor}".encode()) == 3
    with (two_runs / "espcn" / "per_image.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["image"] == "img_001")
    numbers = re.fullmatch(r"([\d.]+) dB / ([\d.]+)", _text(panels[2], "scores"))
    assert numbers, _text(panels[2], "scores")
    assert float(numbers[1]) == round(float(row["psnr_y"]), 2)
    assert float(numbers[2]) == round(float(row["ssim_y"]), 4)
    assert _text(panels[1], "scores") == "25.12 dB / 0.7100"  # 25 + 0.123, 0.7 + 0.01


def test_the_cli_writes_png_and_pdf_with_vector_text_and_the_page(two_runs, tmp_path):
    out = tmp_path / "report"
    # several images: comma-separated, the flag before the run folders
    code = main(["--crops", f"{SET}/img_000,{SET}/img_001", str(two_runs), "-o", str(out)])
    assert code == 0
    for name in ("img_000", "img_001"):
        png = out / f"crops_{SET}_{name}_x3.png"
        with Image.open(png) as im:  # 6.875 in at 300 dpi
            assert im.width == round(6.875 * 300) and 300 < im.height < im.width
        pdf = (out / f"crops_{SET}_{name}_x3.pdf").read_bytes()
        assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType text (fonttype 42)
    md = (out / "report.md").read_text()
    assert f"![crops_{SET}_img_000_x3](crops_{SET}_img_000_x3.png)" in md
    assert (out / "report.html").is_file()


def test_the_region_is_where_the_runs_differ(tmp_path):
    """Bicubic equals the HR; ESPCN differs from it only in an 8x8 block at (30, 20): the
    variance across methods is zero outside it, so the 12x12 window (60 / 5) must hold the
    whole block, and of the windows that do the top-most, left-most one is taken."""
    hr_dir = write_hr_set(tmp_path / "data" / SET, (60, 60), count=1)
    hr = np.asarray(Image.open(hr_dir / "img_000.png"))
    changed = hr.copy()
    changed[20:28, 30:38] = 255 - changed[20:28, 30:38]
    runs = tmp_path / "runs"
    fake_eval_run(runs / "b", "bicubic", 2, SET, hr_dir, {"img_000": hr}, {"img_000": (30, 0.9)})
    fake_eval_run(runs / "e", "espcn", 2, SET, hr_dir, {"img_000": changed}, {"img_000": (20, 0.5)})
    fig, _ = crop_figure(find_runs([runs]), SET, "img_000")
    caption = fig.texts[-1].get_text()
    assert "Region x=26, y=16, 12x12 HR pixels (picked" in caption, caption


def test_bad_names_and_regions_are_one_clear_error(two_runs, tmp_path, capsys):
    out = str(tmp_path / "report")
    cases = [
        (["--crops", f"{SET}/img_0001"], rf"--crops {SET}/img_0001: no such image.*did you mean"),
        (
            ["--crops", "Set14/baboon"],
            r"--crops Set14/baboon: no such image.*sets of these runs: Tiny",
        ),
        (
            ["--crops", f"{SET}/img_000", "--crop-region", "50,10,20,20"],
            rf"--crop-region 50,10,20,20 is outside {SET}/img_000 ×3, whose HR is 63x48",
        ),
        (["--crops", f"{SET}/img_000", "--crop-region", "1,2,3"], r"is not a region: give x,y,w,h"),
        (["--crop-region", "1,2,3,4"], r"--crop-region needs --crops"),
    ]
    for args, message in cases:
        assert exit_code([str(two_runs), "-o", out, *args]) == 2, args
        err = capsys.readouterr().err
        assert re.search(message, err), (args, err)
        assert "Traceback" not in err and err.count("error:") == 1, err


def exit_code(argv: list[str]) -> int:
    """main's status, also when argparse exits (its errors are SystemExit(2))."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(done.code)


def test_from_sr_eval_runs_that_saved_their_images(tiny_data, compose_train, tmp_path):
    """Real runs: bicubic and a luma SRCNN x3 with save_images=true on tiny images; the figure
    shows their saved colour PNGs (the caption says how a luma model's colours were made)
    and the HR that run_info.json points to."""
    ckpt = make_checkpoint(tmp_path / "srcnn.ckpt", "srcnn")  # luma, x3
    runs = tmp_path / "runs"
    for name, model in (("bicubic", ["model=bicubic", "scale=3", "channels=1"]), ("srcnn", [])):
        cfg = compose_train(
            *model,
            *([f"ckpt_path={ckpt}"] if name == "srcnn" else []),
            "save_images=true",
            "data.test_sets=[val]",
            f"paths.data_dir={tiny_data}",
            config_name="eval",
        )
        cfg.paths.output_dir = str(runs / name)
        evaluate(cfg)
    info = json.loads((runs / "srcnn" / "run_info.json").read_text())
    assert info["hr_dirs"] == {"val": str((tiny_data / "val").resolve())}
    out = tmp_path / "report"
    assert main([str(runs), "-o", str(out), "--crops", "val/img_001"]) == 0
    assert {p.name for p in out.glob("crops_*")} == {
        "crops_val_img_001_x3.png",
        "crops_val_img_001_x3.pdf",
    }
    assert (out / "report.html").is_file()

    region = Region(6, 3, 9, 12)
    fig, _ = crop_figure(find_runs([runs]), "val", "img_001", region)
    panels = _crop_axes(fig)
    assert [_text(ax, "label") for ax in panels] == ["HR", "Bicubic", "SRCNN"]
    hr = np.asarray(Image.open(tiny_data / "val" / "img_001.png").convert("RGB"))
    sr = np.asarray(Image.open(runs / "srcnn" / "images" / "val" / "img_001.png"))
    for ax, source in ((panels[0], hr), (panels[2], sr)):
        shown = np.asarray(ax.images[0].get_array())
        k = shown.shape[0] // region.h
        for dy, dx in ((0, 0), (11, 8), (4, 2)):
            assert (shown[dy * k, dx * k] == source[region.y + dy, region.x + dx]).all()
    with (runs / "srcnn" / "per_image.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["image"] == "img_001")
    assert (
        _text(panels[2], "scores") == f"{float(row['psnr_y']):.2f} dB / {float(row['ssim_y']):.4f}"
    )
    assert "SRCNN: luma model, Y from the net and CbCr from bicubic" in fig.texts[-1].get_text()


def test_an_outputs_run_and_bicubic_computed_when_no_run_saved_it(
    tiny_data, compose_train, tmp_path
):
    """An ``sr-eval outputs=`` run shows the images of its folder; with no bicubic run, the
    bicubic crop is computed, and its numbers equal what ``sr-eval model=bicubic channels=3``
    (the app, an independent path) writes into per_image.csv for that image."""
    runs = tmp_path / "runs"
    for name, overrides in (
        ("rgb_bicubic", ["model=bicubic", "scale=2", "channels=3", "save_images=true"]),
        ("outputs", [f"outputs={runs / 'rgb_bicubic' / 'images'}", "scale=2"]),
    ):
        cfg = compose_train(
            *overrides, "data.test_sets=[val]", f"paths.data_dir={tiny_data}", config_name="eval"
        )
        cfg.paths.output_dir = str(runs / name)
        evaluate(cfg)
    reference = runs / "rgb_bicubic"
    (reference / "results.json").rename(tmp_path / "kept.json")  # sr-report sees one run
    fig, _ = crop_figure(find_runs([runs]), "val", "img_000", Region(2, 2, 10, 8))
    panels = _crop_axes(fig)
    assert [_text(ax, "label") for ax in panels] == ["HR", "Bicubic", "outputs"]
    saved = np.asarray(Image.open(reference / "images" / "val" / "img_000.png"))
    shown = np.asarray(panels[2].images[0].get_array())
    k = shown.shape[0] // 8
    assert (shown[::k, ::k] == saved[2:10, 2:12]).all()  # the outputs folder's pixels
    with (reference / "per_image.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["image"] == "img_000")
    want = f"{float(row['psnr_y']):.2f} dB / {float(row['ssim_y']):.4f}"
    assert _text(panels[1], "scores") == want
    # the computed bicubic is the very image sr-eval's RGB bicubic saved
    assert (shown[::k, ::k] == np.asarray(panels[1].images[0].get_array())[::k, ::k]).all()
    assert "Bicubic: computed by sr-report" in fig.texts[-1].get_text()
