"""The decoded-image cache: built once, reused, invalidated, atomic, safe under concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_lightning.data import cache as cache_mod
from sr_lightning.data import datasets
from sr_lightning.data.cache import build_or_open, configure_compile_cache
from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.datasets import (
    ImageList,
    PatchDataset,
    convert_channels,
    header_shape,
    load_set,
    resolve_cache_mode,
)
from sr_lightning.data.images import list_images, load_image
from tests.helpers.data import write_images

SIZES = [(40, 30), (33, 41), (48, 48), (25, 36)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_images(tmp_path / "hr", SIZES)
    Image.fromarray(np.full((20, 24), 77, np.uint8), "L").save(tmp_path / "hr" / "grey.png")
    return tmp_path / "hr"


@pytest.fixture
def decode_calls(monkeypatch) -> list[str]:
    """Every file the datasets module decodes, in order."""
    calls: list[str] = []

    def counting(path):
        calls.append(Path(path).name)
        return load_image(path)

    monkeypatch.setattr(datasets, "load_image", counting)
    return calls


def reference(folder: Path, channels: int) -> list[torch.Tensor]:
    return [convert_channels(load_image(p), channels) for p in list_images(folder)]


def cache_dirs(cache_dir: Path) -> list[Path]:
    """The complete caches (hidden temporary build folders excluded)."""
    return sorted(
        p for p in (cache_dir / "images").iterdir() if p.is_dir() and not p.name.startswith(".")
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_disk_cache_is_built_once_then_reused_without_decoding(
    folder, tmp_path, decode_calls, channels
):
    cache_dir = tmp_path / "cache"
    first = load_set(str(folder), ".", channels, cache="disk", cache_dir=cache_dir)
    assert sorted(decode_calls) == sorted(p.name for p in list_images(folder))
    assert first.images.storage == "disk"
    decode_calls.clear()

    second = load_set(str(folder), ".", channels, cache="disk", cache_dir=cache_dir)
    assert decode_calls == []  # opened, not decoded
    assert second.names == first.names == [p.stem for p in list_images(folder)]
    for got, want in zip(second.images, reference(folder, channels), strict=True):
        assert torch.equal(got, want)
    (only,) = cache_dirs(cache_dir)
    assert (only / "pixels.u8").stat().st_size == sum(t.numel() for t in second.images)


def test_each_colour_space_gets_its_own_cache(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    load_set(str(folder), ".", 1, cache="disk", cache_dir=cache_dir)
    load_set(str(folder), ".", 3, cache="disk", cache_dir=cache_dir)
    assert len(cache_dirs(cache_dir)) == 2


def test_a_changed_file_invalidates_the_cache_and_the_stale_one_is_removed(
    folder, tmp_path, decode_calls
):
    cache_dir = tmp_path / "cache"
    load_set(str(folder), ".", 3, cache="disk", cache_dir=cache_dir)
    (old,) = cache_dirs(cache_dir)
    target = folder / "img_002.png"
    Image.fromarray(np.full((48, 48, 3), 9, np.uint8)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse-mtime filesystems
    decode_calls.clear()

    fresh = load_set(str(folder), ".", 3, cache="disk", cache_dir=cache_dir)
    assert len(decode_calls) == len(list_images(folder))  # rebuilt
    assert torch.equal(fresh.images[fresh.names.index("img_002")], torch.full((3, 48, 48), 9))
    (new,) = cache_dirs(cache_dir)
    assert new != old and not old.exists()


def test_an_added_file_invalidates_the_cache(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    load_set(str(folder), ".", 1, cache="disk", cache_dir=cache_dir)
    write_images(folder / "more", [(30, 30)])
    (folder / "more" / "img_000.png").rename(folder / "zz_new.png")
    fresh = load_set(str(folder), ".", 1, cache="disk", cache_dir=cache_dir)
    assert fresh.names[-1] == "zz_new" and len(fresh) == len(SIZES) + 2


def test_an_error_mid_build_leaves_no_cache_behind(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    files = list_images(folder)
    seen = []

    def failing(path):
        seen.append(path)
        if len(seen) == 3:
            raise RuntimeError("disk full")
        return load_image(path)

    with pytest.raises(RuntimeError, match="disk full"):
        build_or_open(files, failing, cache_dir, "hr", 3, workers=1)
    assert list((cache_dir / "images").iterdir()) == [
        p for p in (cache_dir / "images").iterdir() if p.suffix == ".lock"
    ]
    _, refs = build_or_open(files, load_image, cache_dir, "hr", 3, workers=1)
    assert len(refs) == len(files)
    assert all(torch.equal(r.load(), load_image(p)) for r, p in zip(refs, files, strict=True))


def _crash_mid_build(files, cache_dir):
    """A builder process killed (no cleanup at all) after decoding two files."""
    count = []

    def decode(path):
        count.append(path)
        if len(count) == 3:
            os._exit(3)
        return load_image(path)

    build_or_open(files, decode, cache_dir, "hr", 3, workers=1)


def test_a_killed_builder_leaves_no_usable_half_cache(folder, tmp_path, decode_calls):
    cache_dir = tmp_path / "cache"
    files = list_images(folder)
    proc = mp.get_context("fork").Process(target=_crash_mid_build, args=(files, cache_dir))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 3
    leftovers = [p for p in (cache_dir / "images").iterdir() if p.name.startswith(".")]
    assert leftovers and not cache_dirs(cache_dir)  # only a hidden temporary folder

    image_set = load_set(str(folder), ".", 3, cache="disk", cache_dir=cache_dir)
    assert len(decode_calls) == len(files)  # the half build was not used
    for got, want in zip(image_set.images, reference(folder, 3), strict=True):
        assert torch.equal(got, want)
    assert not [p for p in (cache_dir / "images").iterdir() if p.name.startswith(".")]


def test_a_truncated_cache_is_detected_and_rebuilt(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    load_set(str(folder), ".", 3, cache="disk", cache_dir=cache_dir)
    (path,) = cache_dirs(cache_dir)
    pixels = path / "pixels.u8"
    pixels.write_bytes(pixels.read_bytes()[:100])
    image_set = load_set(str(folder), ".", 3, cache="disk", cache_dir=cache_dir)
    for got, want in zip(image_set.images, reference(folder, 3), strict=True):
        assert torch.equal(got, want)


def _concurrent_builder(files, cache_dir, log_path, barrier, queue):
    def slow_decode(path):
        with open(log_path, "a") as f:
            f.write(f"{os.getpid()} {Path(path).name}\n")
        time.sleep(0.05)
        return load_image(path)

    barrier.wait()
    names, refs = build_or_open(files, slow_decode, cache_dir, "hr", 3, workers=1)
    digests = [hashlib.sha256(r.load().numpy().tobytes()).hexdigest() for r in refs]
    queue.put((names, digests))


def test_concurrent_builders_make_one_valid_cache(folder, tmp_path):
    cache_dir, log_path = tmp_path / "cache", tmp_path / "decodes.log"
    files = list_images(folder)
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_concurrent_builder, args=(files, cache_dir, log_path, barrier, queue))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    expected = [hashlib.sha256(load_image(f).numpy().tobytes()).hexdigest() for f in files]
    assert results[0] == results[1] == ([f.stem for f in files], expected)
    decodes = log_path.read_text().splitlines()
    assert len(decodes) == len(files) and len({line.split()[0] for line in decodes}) == 1
    assert len(cache_dirs(cache_dir)) == 1
    assert not [p for p in (cache_dir / "images").iterdir() if p.name.startswith(".")]


def test_mapped_sets_pickle_as_references_and_reopen(folder, tmp_path):
    image_set = load_set(str(folder), ".", 3, cache="disk", cache_dir=tmp_path / "cache")
    blob = pickle.dumps(image_set.images)
    assert len(blob) < 4000 < sum(t.numel() for t in image_set.images)
    cache_mod._MAPS.clear()  # as in a freshly spawned worker
    restored = pickle.loads(blob)
    for got, want in zip(restored, reference(folder, 3), strict=True):
        assert torch.equal(got, want)


def test_in_place_edits_of_a_batch_never_reach_the_cache_file(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    image_set = load_set(str(folder), ".", 3, cache="disk", cache_dir=cache_dir)
    (path,) = cache_dirs(cache_dir)
    before = (path / "pixels.u8").read_bytes()
    image_set.images[0].zero_()
    assert (path / "pixels.u8").read_bytes() == before


def test_skip_bad_files_are_left_out_of_the_disk_cache(folder, tmp_path):
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"broken\.png"):
        load_set(str(folder), ".", 3, cache="disk", cache_dir=tmp_path / "cache")
    image_set = load_set(str(folder), ".", 3, True, cache="disk", cache_dir=tmp_path / "cache")
    assert "broken" not in image_set.names and len(image_set) == len(SIZES) + 1


@pytest.mark.parametrize("mode", ["ram", "disk", "none"])
def test_every_mode_gives_the_same_patches(folder, tmp_path, mode):
    ram = load_set(str(folder), ".", 1, cache="ram")
    other = load_set(str(folder), ".", 1, cache=mode, cache_dir=tmp_path / "cache")
    assert other.images.storage == {"ram": "ram", "disk": "disk", "none": "file"}[mode]
    a = PatchDataset(ram, 24, patches_per_image=3, random_crops=False)
    b = PatchDataset(other, 24, patches_per_image=3, random_crops=False)
    assert len(a) == len(b) == 3 * 4  # 25x36 and the 24x20 grey image are too small
    for i in range(len(a)):
        assert torch.equal(a[i], b[i])


def test_auto_mode_sends_only_big_sets_to_disk(folder, tmp_path, monkeypatch):
    files = list_images(folder)
    decoded = sum(3 * h * w for w, h in SIZES) + 3 * 20 * 24
    assert resolve_cache_mode("auto", files, 3, None) == "ram"  # no cache folder configured
    monkeypatch.setattr(datasets, "AUTO_RAM_LIMIT_BYTES", decoded)
    assert resolve_cache_mode("auto", files, 3, tmp_path) == "ram"
    monkeypatch.setattr(datasets, "AUTO_RAM_LIMIT_BYTES", decoded - 1)
    assert resolve_cache_mode("auto", files, 3, tmp_path) == "disk"
    assert resolve_cache_mode("auto", files, 1, tmp_path) == "ram"  # luma is a third


def test_bad_cache_settings_are_clear_errors(folder):
    files = list_images(folder)
    with pytest.raises(ValueError, match=r"data\.cache must be one of auto, ram, disk, none"):
        resolve_cache_mode("mmap", files, 3, "/tmp")
    with pytest.raises(ValueError, match=r"data\.cache=disk needs data\.cache_dir"):
        resolve_cache_mode("disk", files, 3, None)


def test_header_shapes_match_decoding_including_exif_rotation(tmp_path):
    image = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    image.save(tmp_path / "rotated.jpg", exif=exif)
    image.save(tmp_path / "rotated.png", exif=exif)
    image.convert("L").save(tmp_path / "grey.png")
    for name in ("rotated.jpg", "rotated.png", "grey.png"):
        for channels in (1, 3):
            decoded = convert_channels(load_image(tmp_path / name), channels)
            assert header_shape(tmp_path / name, channels) == tuple(decoded.shape), name


def test_channels_none_keeps_each_file_as_decoded_headers_and_disk_cache_included(tmp_path):
    """channels=None (evaluation sets under bd/dn/realesrgan): a grey file stays grey, a
    colour one RGB; the header predicts what load_image gives for every kind of file."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8))
    files = {"1": "a.png", "L": "b.png", "LA": "c.png", "I": "d.tif", "I;16": "e.png"}
    files |= {"P": "f.png", "RGB": "g.png", "RGBA": "h.png", "CMYK": "i.tif", "YCbCr": "j.jpg"}
    grey = {"1", "L", "LA", "I", "I;16"}
    for mode, name in files.items():
        rgb.convert(mode).save(tmp_path / name)
    transparent = rgb.convert("P")
    transparent.info["transparency"] = 0
    transparent.save(tmp_path / "k.png")  # a palette with transparency decodes to RGBA
    files["PA"] = "k.png"
    for mode, name in files.items():
        decoded = load_image(tmp_path / name)
        assert decoded.shape[0] == (1 if mode in grey else 3), mode
        assert header_shape(tmp_path / name, None) == tuple(decoded.shape), mode
    images = load_set(str(tmp_path), ".", None, cache="disk", cache_dir=tmp_path / "cache")
    by_name = dict(zip(images.names, images.images, strict=True))
    assert torch.equal(by_name["b"], load_image(tmp_path / "b.png"))  # grey, one channel
    assert torch.equal(by_name["g"], load_image(tmp_path / "g.png"))


def test_image_lists_join_slice_and_mix_storage(folder, tmp_path):
    disk = load_set(str(folder), ".", 3, cache="disk", cache_dir=tmp_path / "cache").images
    ram = ImageList([torch.zeros(3, 5, 5, dtype=torch.uint8)])
    joined = list(ram) + disk  # a plain list joined to an ImageList stays lazy
    assert isinstance(joined, ImageList) and joined.storage == "disk+ram"
    assert len(joined) == len(disk) + 1 and joined.shape(1) == tuple(disk[0].shape)
    assert isinstance(joined[1:3], ImageList) and torch.equal(joined[1:3][0], disk[0])


def test_prepare_data_builds_the_caches_and_setup_only_opens_them(folder, tmp_path, decode_calls):
    dm = SRDataModule(
        data_dir=str(tmp_path),
        train_sets=["hr"],
        val_sets=["hr"],
        scale=2,
        channels=3,
        patch_size=16,
        batch_size=2,
        cache="disk",
        cache_dir=str(tmp_path / "cache"),
    )
    dm.prepare_data()
    assert len(decode_calls) == len(list_images(folder))  # train and val share one cache
    decode_calls.clear()
    dm.setup("fit")
    assert decode_calls == []
    assert dm.train_set.images.storage == "disk" and dm.val_sets[0].images.storage == "disk"
    index = json.loads((cache_dirs(tmp_path / "cache")[0] / "index.json").read_text())
    assert index["names"] == [p.stem for p in list_images(folder)]


def test_compile_cache_goes_under_the_cache_dir_unless_set(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert configure_compile_cache(tmp_path) == str(tmp_path / "inductor")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/mine")
    assert configure_compile_cache(tmp_path) == "/mine"


def test_prepare_data_leaves_a_missing_test_set_to_the_stage_that_needs_it(folder, tmp_path):
    dm = SRDataModule(
        data_dir=str(tmp_path),
        train_sets=["hr"],
        val_sets=["hr"],
        test_sets=["Urban100"],  # not downloaded
        scale=2,
        channels=3,
        patch_size=16,
        batch_size=2,
        cache="disk",
        cache_dir=str(tmp_path / "cache"),
    )
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == len(SIZES) + 1
    with pytest.raises(FileNotFoundError, match="Urban100"):
        dm.setup("test")
