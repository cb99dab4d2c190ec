"""Decoding: every image mode lands as uint8 grey or RGB, bad files get a named error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sr_lightning.data.images import ImageLoadError, list_images, load_image, load_images


def _save(path, array, mode=None, **kwargs):
    Image.fromarray(array, mode=mode).save(path, **kwargs)
    return path


def test_rgb_and_grey_keep_their_values(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rgb[..., 0].copy()
    out_rgb = load_image(_save(tmp_path / "a.png", rgb))
    out_grey = load_image(_save(tmp_path / "b.png", grey))
    assert out_rgb.dtype == torch.uint8 and out_rgb.shape == (3, 5, 7)
    assert torch.equal(out_rgb.permute(1, 2, 0), torch.from_numpy(rgb))
    assert out_grey.shape == (1, 5, 7)
    assert torch.equal(out_grey[0], torch.from_numpy(grey))


def test_rgba_drops_alpha_and_palette_expands(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    out = load_image(_save(tmp_path / "a.png", rgba))
    assert torch.equal(out.permute(1, 2, 0), torch.from_numpy(rgba[..., :3]))
    pal = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"))
    assert torch.equal(
        load_image(tmp_path / "p.png").permute(1, 2, 0), torch.from_numpy(expected.copy())
    )


def test_16bit_grey_is_rounded_to_8bit_levels(tmp_path):
    values = np.array([[0, 257, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert out.shape == (1, 1, 4)
    assert out[0].numpy().tolist() == expected.tolist()


def test_exif_rotation_is_applied(tmp_path):
    array = np.zeros((2, 4, 3), dtype=np.uint8)
    array[0, 0] = 255
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    image.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (3, 4, 2)  # displayed upright: width and height swap


def test_corrupt_image_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    _save(path, np.zeros((8, 8, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ImageLoadError, match=r"broken.png.*skip_bad"):
        load_image(path)
    names, images = load_images(
        [path, _save(tmp_path / "ok.png", np.zeros((3, 3), np.uint8))], skip_bad=True
    )
    assert names == ["ok"] and len(images) == 1


def test_list_images_ignores_other_files_and_reports_missing(tmp_path):
    _save(tmp_path / "b.png", np.zeros((3, 3), np.uint8))
    _save(tmp_path / "a.bmp", np.zeros((3, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "MANIFEST.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.bmp", "b.png"]
    assert [p.name for p in list_images(tmp_path, include=["b.png", "a"])] == ["b.png", "a.bmp"]
    with pytest.raises(FileNotFoundError, match="not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="zzz"):
        list_images(tmp_path, include=["zzz"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(empty)


def test_training_and_upscaling_share_one_decoder_16bit_colour_included(tmp_path):
    """load_image is read_image reduced to opaque 8 bits: a 16-bit RGBA PNG keeps all its bits
    for sr-upscale and rounds (v / 257) for training, alpha dropped."""
    from sr_lightning.apps.upscale import write_png16
    from sr_lightning.data.images import read_image

    rng = np.random.default_rng(0)
    array = rng.integers(0, 65536, size=(5, 7, 4), dtype=np.uint16)
    write_png16(array, tmp_path / "c16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), array)
    expected = np.rint(array[:, :, :3] / 257.0).astype(np.uint8).transpose(2, 0, 1)
    np.testing.assert_array_equal(load_image(tmp_path / "c16.png").numpy(), expected)
