"""sr-upscale: reading and writing every kind of image, and never harming a user's files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import sr_lightning.apps.upscale as upscale
from sr_lightning.apps.export import export_generator
from sr_lightning.apps.upscale import write_png16
from sr_lightning.core.model_files import resolve_model
from sr_lightning.data.images import ImageLoadError, orient, read_image
from tests.helpers.checkpoints import make_checkpoint
from tests.helpers.compose import compose_app

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*no `val_dataloader`.*",
    "ignore:.*LeafSpec.*",
)


# -- an independent PNG encoder: every filter type, 16 bits -------------------------------


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def encode_png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG whose rows cycle through filters None, Sub, Up, Average and Paeth."""
    h, w, c = array.shape
    bpp = 2 * c
    raw = array.astype(">u2").reshape(h, w * c).view(np.uint8).astype(np.int64)
    lines = []
    for y in range(h):
        row = raw[y]
        up = raw[y - 1] if y else np.zeros_like(row)
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        kind = y % 5
        predictor = [0 * row, left, up, (left + up) // 2, _paeth(left, up, up_left)][kind]
        lines.append(bytes([kind]) + ((row - predictor) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(lines)))
        + chunk(b"IEND", b"")
    )


def sixteen_bit(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (h, w, c), dtype=np.uint16)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_sixteen_bit_pngs_are_read_with_all_their_bits(tmp_path, channels):
    array = sixteen_bit(11, 13, channels)
    path = tmp_path / "x.png"
    path.write_bytes(encode_png16(array))
    got = read_image(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_sixteen_bit_pngs_written_are_valid_and_exact(tmp_path, channels):
    array = sixteen_bit(300, 7, channels, seed=1)  # several compressed strips
    path = tmp_path / "x.png"
    write_png16(array, path, rows_per_chunk=64)
    np.testing.assert_array_equal(read_image(path), array)
    with Image.open(path) as image:  # Pillow, independently: the size, and 8-bit values
        image.load()
        assert image.size == (7, 300)
        pil = np.asarray(image)
    if channels == 1:
        np.testing.assert_array_equal(pil, array[:, :, 0])
    elif channels == 3:
        np.testing.assert_array_equal(pil, (array >> 8).astype(np.uint8))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    pixels = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "x.png"
    image.save(path, exif=exif)
    with Image.open(path) as reopened:
        expected = np.asarray(ImageOps.exif_transpose(reopened))
    np.testing.assert_array_equal(orient(pixels, orientation), expected)
    np.testing.assert_array_equal(read_image(path), expected)


def test_an_exif_rotated_jpeg_is_upright(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    got = read_image(path)
    assert got.shape == (40, 20, 3)
    assert got[:15].mean() > 200 and got[25:].mean() < 50  # the white half is now on top


def test_palette_grey_and_undecodable_inputs(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P").save(
        tmp_path / "p.png"
    )
    assert read_image(tmp_path / "p.png").shape == (8, 8, 3)
    Image.fromarray(np.zeros((5, 6), dtype=np.uint8)).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").shape == (5, 6, 1)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")


# -- the app ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A luma pre-upsampling checkpoint (SRCNN x3) and an RGB safetensors (SRResNet x2)."""
    folder = tmp_path_factory.mktemp("models")
    srcnn = make_checkpoint(folder / "srcnn.ckpt", "srcnn")
    srresnet = make_checkpoint(folder / "srresnet.ckpt", "srresnet")
    weights = export_generator(
        resolve_model(ckpt_path=srresnet), folder / "srresnet.safetensors", "safetensors"
    )
    return {"srcnn": srcnn, "srresnet": weights}


def compose_upscale(*overrides: str):
    return compose_app("upscale", "progress=false", *overrides)


def write_inputs(folder: Path) -> dict[str, np.ndarray]:
    """Grey, RGB, RGBA and 16-bit RGB inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "grey.png": rng.integers(0, 256, (12, 14, 1), dtype=np.uint8),
        "rgb.png": rng.integers(0, 256, (13, 11, 3), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (10, 12, 4), dtype=np.uint8),
        "deep.png": sixteen_bit(9, 10, 3),
    }
    for name, array in arrays.items():
        if array.dtype == np.uint16:
            (folder / name).write_bytes(encode_png16(array))
        else:
            Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(folder / name)
    return arrays


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("source", ["ckpt", "weights"])
def test_a_folder_keeps_depth_channels_and_inputs(models, tmp_path, source):
    inputs = tmp_path / "in"
    arrays = write_inputs(inputs)
    before = snapshot(inputs)
    model = f"ckpt_path={models['srcnn']}" if source == "ckpt" else f"weights={models['srresnet']}"
    scale = 3 if source == "ckpt" else 2
    written = upscale.run(compose_upscale(f"input={inputs}", f"output={tmp_path / 'out'}", model))
    assert sorted(p.name for p in written) == sorted(f"{Path(n).stem}_x{scale}.png" for n in arrays)
    for name, array in arrays.items():
        out = read_image(tmp_path / "out" / f"{Path(name).stem}_x{scale}.png")
        h, w, c = array.shape
        assert out.shape == (h * scale, w * scale, c), name
        assert out.dtype == array.dtype, name
    assert snapshot(inputs) == before, "inputs are never written"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_existing_outputs_are_never_overwritten_unless_asked(models, tmp_path):
    inputs = tmp_path / "in"
    write_inputs(inputs)
    out = tmp_path / "out"
    out.mkdir()
    (out / "rgb_x2.png").write_bytes(b"precious")
    args = [f"input={inputs}", f"output={out}", f"weights={models['srresnet']}"]
    with pytest.raises(FileExistsError, match=r"rgb_x2\.png"):
        upscale.run(compose_upscale(*args))
    assert (out / "rgb_x2.png").read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["rgb_x2.png"], "nothing written at all"
    # skip_existing: the others are written, the existing one is left alone
    written = upscale.run(compose_upscale(*args, "skip_existing=true"))
    assert len(written) == 3 and (out / "rgb_x2.png").read_bytes() == b"precious"
    upscale.run(compose_upscale(*args, "overwrite=true"))
    assert read_image(out / "rgb_x2.png").shape == (26, 22, 3)


def test_an_output_that_would_replace_an_input_is_refused(models, tmp_path):
    inputs = tmp_path / "in"
    write_inputs(inputs)
    before = snapshot(inputs)
    cfg = compose_upscale(
        f"input={inputs}",
        f"output={inputs}",
        f"weights={models['srresnet']}",
        "suffix=''",
        "format=same",
        "overwrite=true",
    )
    with pytest.raises(ValueError, match="would overwrite the input"):
        upscale.run(cfg)
    assert snapshot(inputs) == before


def test_an_interrupted_write_leaves_nothing(models, tmp_path, monkeypatch):
    inputs = tmp_path / "in"
    write_inputs(inputs)
    real_write = upscale.write_image

    def write_then_die(array, path, fmt):
        real_write(array, path, fmt)
        raise KeyboardInterrupt

    monkeypatch.setattr(upscale, "write_image", write_then_die)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        upscale.run(
            compose_upscale(f"input={inputs}", f"output={out}", f"weights={models['srresnet']}")
        )
    assert list(out.iterdir()) == [], "no half-written output and no temporary file"


def test_a_folder_input_names_the_files_it_cannot_read(models, tmp_path, caplog):
    """A .gif beside the PNGs is not upscaled, and the run says so once, naming it."""
    inputs = tmp_path / "in"
    write_inputs(inputs)
    Image.new("RGB", (8, 8)).save(inputs / "anim.gif")
    with caplog.at_level("WARNING"):
        written = upscale.run(
            compose_upscale(
                f"input={inputs}", f"output={tmp_path / 'out'}", f"weights={models['srresnet']}"
            )
        )
    assert not [p for p in written if "anim" in p.name]
    warnings = [r.getMessage() for r in caplog.records if "anim.gif" in r.getMessage()]
    assert len(warnings) == 1 and ".gif" in warnings[0]


def test_hidden_part_files_a_killed_run_left_are_removed_on_the_next_run(models, tmp_path):
    """A SIGKILL leaves a hidden temporary file (image or video) in the output folder; the
    next run there removes it, once it is older than that run and its writer is gone."""
    inputs = tmp_path / "in"
    write_inputs(inputs)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    debris = [
        out / f".rgb_x2.p{dead}.ab12cd34.part.png",
        out / f".clip_x2.p{dead}.cd34ef56.part.mp4",
    ]
    old = time.time() - 3600
    for path in debris:
        path.write_bytes(b"half a file")
        os.utime(path, (old, old))
    upscale.run(
        compose_upscale(f"input={inputs}", f"output={out}", f"weights={models['srresnet']}")
    )
    assert not any(path.exists() for path in debris)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_recursive_folders_are_mirrored_and_earlier_outputs_ignored(models, tmp_path):
    root = tmp_path / "shoot"
    write_inputs(root / "day1")
    write_inputs(root / "day2")
    out = root / "sr"  # inside the input folder
    args = [f"input={root}", f"output={out}", f"weights={models['srresnet']}", "recursive=true"]
    first = upscale.run(compose_upscale(*args))
    assert len(first) == 8
    assert (out / "day1" / "rgba_x2.png").is_file() and (out / "day2" / "deep_x2.png").is_file()
    second = upscale.run(compose_upscale(*args, "skip_existing=true"))
    assert second == [], "outputs inside the input folder are not inputs"


def test_a_glob_selects_inputs(models, tmp_path):
    inputs = tmp_path / "in"
    write_inputs(inputs)
    out = tmp_path / "out"
    written = upscale.run(
        compose_upscale(f"input={inputs}/r*.png", f"output={out}", f"weights={models['srresnet']}")
    )
    assert sorted(p.name for p in written) == ["rgb_x2.png", "rgba_x2.png"]


def test_bad_requests_are_named(models, tmp_path):
    inputs = tmp_path / "in"
    write_inputs(inputs)
    with pytest.raises(ValueError, match="exactly one model source"):
        upscale.run(compose_upscale(f"input={inputs}", f"output={tmp_path / 'o'}"))
    with pytest.raises(FileNotFoundError, match="nope"):
        upscale.run(
            compose_upscale(
                f"input={tmp_path / 'nope'}", "output=o", f"weights={models['srresnet']}"
            )
        )
    with pytest.raises(ValueError, match="scale=3"):
        upscale.run(
            compose_upscale(
                f"input={inputs}",
                f"output={tmp_path / 'o'}",
                f"weights={models['srresnet']}",
                "scale=3",
            )
        )


@pytest.mark.slow  # two fresh interpreters importing torch and Lightning: ~10-40 s
def test_the_console_script_leaves_no_run_directory(models, tmp_path):
    """The real entry point: Hydra parses the command line and writes nothing but outputs."""
    inputs = tmp_path / "in"
    write_inputs(inputs)
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "sr_lightning.apps.upscale",
        f"input={inputs}/rgb.png",
        "output=out",
        f"weights={models['srresnet']}",
        "tile=5",
    ]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["out"]
    assert [p.name for p in (work / "out").iterdir()] == ["rgb_x2.png"]
    again = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2  # a user error, as docs/inference.md says
    assert "already exist" in again.stderr and "Traceback" not in again.stderr


def test_an_output_with_an_image_extension_is_that_file(models, tmp_path):
    """``output=result.png`` writes result.png (not a folder of that name); several inputs
    into one file name are refused before anything is written."""
    inputs = tmp_path / "in"
    write_inputs(inputs)
    target = tmp_path / "result.png"
    args = [f"weights={models['srresnet']}", f"output={target}"]
    written = upscale.run(compose_upscale(f"input={inputs / 'rgb.png'}", *args))
    assert written == [target] and target.is_file()
    assert read_image(target).shape == (26, 22, 3)
    jpg = tmp_path / "result.jpg"
    upscale.run(compose_upscale(f"input={inputs / 'rgb.png'}", *args[:1], f"output={jpg}"))
    with Image.open(jpg) as image:
        assert image.format == "JPEG"
    with pytest.raises(ValueError, match=r"names one image file.*4 images"):
        upscale.run(compose_upscale(f"input={inputs}", *args[:1], f"output={tmp_path / 'x.png'}"))
    assert not (tmp_path / "x.png").exists()
