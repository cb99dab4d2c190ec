"""sr-upscale: upscale your own images (a file, a folder or a glob) with a trained model.

    sr-upscale input=PATH output=DIR ckpt_path=CKPT
    sr-upscale input=PATH output=DIR weights=FILE [model=NAME scale=S channels=C]
    sr-upscale input=PATH output=DIR onnx=FILE

The scale comes from the model. Inputs are never written; an existing output is an error
unless ``overwrite=true`` (or skipped with ``skip_existing=true``); every output is written
to a temporary file in the output folder and renamed into place, so an interrupted run
leaves only whole images. Images keep their bit depth (8 or 16 bits), alpha channel and
EXIF orientation (applied, so outputs look as a viewer shows the input). See
``docs/inference.md``.
"""

from __future__ import annotations

import glob
import logging
import struct
import sys
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from PIL import Image

from sr_lightning.apps.upscale_video import (
    VIDEO_EXTENSIONS,
    is_video,
    names_a_video_file,
    plan_videos,
    upscale_videos,
    video_file_job,
)
from sr_lightning.core.config import CONFIG_PATH, register_resolvers
from sr_lightning.core.inference import Upscaler, resolve_device
from sr_lightning.core.model_files import model_request, resolve_model
from sr_lightning.data.images import IMAGE_EXTENSIONS, ImageLoadError, read_image, warn_skipped
from sr_lightning.runtime.atomic import atomic_output, remove_stale_parts
from sr_lightning.runtime.errors import EXIT_USER_ERROR, file_errors, literal_hint

log = logging.getLogger("sr_lightning.apps.upscale")

register_resolvers()

OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "bmp": ".bmp",
                  "tif": ".tif", "tiff": ".tif"}  # fmt: skip
_GLOB_CHARS = set("*?[")


# -- writing ------------------------------------------------------------------------------


def write_image(array: np.ndarray, path: Path, fmt: str) -> None:
    """Write (H, W, C) uint8 / uint16 to ``path`` in ``fmt`` (png, jpg, webp, bmp, tif).

    16-bit images are written as 16-bit PNG (any channel count) or 16-bit grey TIFF; other
    formats cannot hold 16 bits and get the image rounded to 8 bits.
    """
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if array.dtype == np.uint16:
        if fmt == "png":
            write_png16(array, path)
            return
        if fmt in ("tif", "tiff") and channels == 1:
            Image.fromarray(array[:, :, 0], mode="I;16").save(path, format="TIFF")
            return
        log.warning("%s: %s cannot hold 16 bits; writing 8 bits", path.name, fmt)
        array = np.floor(array.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    if fmt in ("jpg", "jpeg") and channels in (2, 4):
        raise ValueError(f"format={fmt} cannot hold the alpha channel of {path.name}; use png")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    image = Image.fromarray(array[:, :, 0] if channels == 1 else array, mode=mode)
    options = {"jpg": {"quality": 95}, "jpeg": {"quality": 95}, "webp": {"lossless": True}}
    image.save(path, format=_PIL_FORMATS[fmt], **options.get(fmt, {}))


_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP",
                "tif": "TIFF", "tiff": "TIFF"}  # fmt: skip


def write_png16(array: np.ndarray, path: Path, rows_per_chunk: int = 256) -> None:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA), which Pillow cannot write for colour.

    Rows use the "Up" filter (difference to the row above) and are compressed in strips, so
    memory stays at a few strips whatever the image size.
    """
    h, w, c = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    compressor = zlib.compressobj(6)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        _png_chunk(f, b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
        previous = np.zeros((1, w * c * 2), dtype=np.uint8)
        for y0 in range(0, h, rows_per_chunk):
            rows = array[y0 : y0 + rows_per_chunk].astype(">u2").reshape(-1, w * c)
            rows = rows.view(np.uint8)
            above = np.concatenate([previous, rows[:-1]])
            filtered = rows - above  # uint8 arithmetic wraps modulo 256, as PNG wants
            lines = np.concatenate([np.full((len(rows), 1), 2, dtype=np.uint8), filtered], axis=1)
            data = compressor.compress(lines.tobytes())
            if data:
                _png_chunk(f, b"IDAT", data)
            previous = rows[-1:]
        _png_chunk(f, b"IDAT", compressor.flush())
        _png_chunk(f, b"IEND", b"")


def _png_chunk(f, kind: bytes, data: bytes) -> None:
    f.write(struct.pack(">I", len(data)))
    f.write(kind)
    f.write(data)
    f.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


# -- planning inputs and outputs ----------------------------------------------------------


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def collect_inputs(
    spec: str, recursive: bool, exclude: Path | None = None
) -> tuple[list[Path], Path | None]:
    """Input files of a file, folder or glob, sorted; and the folder outputs mirror (or None).

    Files under ``exclude`` (the output folder, when it is a sub-folder of the input folder)
    are left out, so earlier outputs are not upscaled again.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return [path], None
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        files = [p for p in path.glob(pattern) if p.is_file()]
        warn_skipped(path, pattern)  # a .gif among the inputs is named, not silently left out
        root: Path | None = path
    elif _GLOB_CHARS & set(spec):
        files = [Path(p) for p in glob.glob(str(path), recursive=recursive) if Path(p).is_file()]
        root = None
    else:
        raise FileNotFoundError(f"input={spec}: no such file or folder (and not a glob pattern)")
    files = sorted(
        p
        for p in files
        if p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS and not p.name.startswith(".")
    )
    if exclude is not None and root is not None and exclude.resolve() != root.resolve():
        ex = exclude.resolve()
        files = [p for p in files if ex not in p.resolve().parents]
    if not files:
        raise FileNotFoundError(
            f"input={spec}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) or videos "
            f"({', '.join(sorted(VIDEO_EXTENSIONS))})"
            + (
                ""
                if recursive or not path.is_dir()
                else "; recursive=true descends into sub-folders"
            )
        )
    return files, root


def names_a_file(output: Path) -> bool:
    """``output=result.png``: an image file name (its extension says the format), not a folder."""
    return output.suffix.lower().lstrip(".") in OUTPUT_FORMATS and not output.is_dir()


def plan_jobs(
    files: Iterable[Path], root: Path | None, output: Path, fmt: str, suffix: str, scale: int
) -> list[Job]:
    """Where each input goes: ``output/<relative folder>/<stem><suffix>.<ext>``."""
    jobs = []
    for src in files:
        rel = src.relative_to(root).parent if root is not None else Path()
        ext = src.suffix.lower() if fmt == "same" else OUTPUT_FORMATS[fmt]
        name = f"{src.stem}{suffix.format(scale=scale)}{ext}"
        jobs.append(Job(src, output / rel / name))
    return jobs


def check_jobs(jobs: list[Job], overwrite: bool, skip_existing: bool) -> list[Job]:
    """Refuse plans that would write an input or one output twice; handle existing outputs."""
    sources = {j.source.resolve() for j in jobs}
    clobber = [j for j in jobs if j.target.resolve() in sources]
    if clobber:
        raise ValueError(
            f"output {clobber[0].target} would overwrite the input {clobber[0].source}; "
            "choose another output folder, or a suffix (suffix=_x{scale})"
        )
    seen: dict[Path, Path] = {}
    for j in jobs:
        key = j.target.resolve()
        if key in seen:
            raise ValueError(
                f"{seen[key]} and {j.source} would both be written to {j.target}; "
                "rename one, or upscale them in separate runs"
            )
        seen[key] = j.source
    existing = [j for j in jobs if j.target.exists()]
    if existing and skip_existing:
        print(f"skipping {len(existing)} image(s) whose output exists")
        return [j for j in jobs if not j.target.exists()]
    if existing and not overwrite:
        names = ", ".join(str(j.target) for j in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise FileExistsError(
            f"{len(existing)} output(s) already exist: {names}{more}. Pass overwrite=true to "
            "replace them, skip_existing=true to skip them, or choose another output folder."
        )
    return jobs


# -- the app ------------------------------------------------------------------------------


def expected_model(cfg: DictConfig) -> dict:
    method = cfg.model.get("method") if cfg.get("model") else None
    return {"method": method, "scale": cfg.get("scale"), "channels": cfg.get("channels")}


def build_upscaler(cfg: DictConfig) -> Upscaler:
    model_cfg = cfg.get("model")
    if cfg.get("weights") and model_cfg is not None and cfg.get("scale") is None:
        raise ValueError(
            "model= needs scale=<s> (and channels=1|3): e.g. model=srcnn scale=3 channels=1"
        )
    device = resolve_device(cfg.device)
    generator = resolve_model(
        ckpt_path=cfg.get("ckpt_path"),
        weights=cfg.get("weights"),
        onnx=cfg.get("onnx"),
        torchscript=cfg.get("torchscript"),
        model_cfg=model_request(cfg),
        expect=expected_model(cfg),
        device=device,
    )
    return Upscaler(
        generator,
        device=device,
        precision=cfg.precision,
        channels_last=bool(cfg.channels_last),
        tile=cfg.tile,
        tile_overlap=cfg.tile_overlap,
        batch_size=int(cfg.batch_size),
        memory_fraction=float(cfg.memory_fraction),
        progress=bool(cfg.progress),
        compile=bool(cfg.compile),
    )


def run(cfg: DictConfig) -> list[Path]:
    """Upscale every input of ``cfg``; returns the outputs written."""
    if not cfg.get("input"):
        raise ValueError("input=PATH is required: an image, a folder or a quoted glob")
    if not cfg.get("output"):
        raise ValueError(
            "output= is required: the folder the upscaled images go to (or, for one input "
            "image, the output file: output=result.png)"
        )
    fmt = str(cfg.format).lower()
    if fmt != "same" and fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format={cfg.format}: choose one of same, {', '.join(OUTPUT_FORMATS)}")
    output = Path(cfg.output).expanduser()
    to_file = names_a_file(output)
    to_video = names_a_video_file(output)
    if output.exists() and not output.is_dir() and not (to_file or to_video):
        raise NotADirectoryError(f"output={output} is a file; output= names a folder")
    files, root = collect_inputs(
        str(cfg.input), bool(cfg.recursive), exclude=None if to_file or to_video else output
    )
    videos = [p for p in files if is_video(p)]
    files = [p for p in files if not is_video(p)]
    codec = str((cfg.get("video") or {}).get("codec") or "libx264")
    if to_video:  # checked before the model loads
        video_jobs = video_file_job(files, videos, output, codec, str(cfg.input))
    if to_file and videos:
        raise ValueError(
            f"output={cfg.output} names an image file; for a video name a video file "
            "(output=clip_x3.mp4) or a folder"
        )
    if to_file and len(files) > 1:
        raise ValueError(
            f"output={cfg.output} names one image file, but input={cfg.input} has "
            f"{len(files)} images; give a folder (output=<folder>) for several"
        )

    upscaler = build_upscaler(cfg)
    g = upscaler.generator
    if to_file:
        jobs = [Job(files[0], output)]
    else:
        jobs = plan_jobs(files, root, output, fmt, str(cfg.suffix), g.scale)
    jobs = check_jobs(jobs, bool(cfg.overwrite), bool(cfg.skip_existing))
    if not to_video:
        video_jobs = plan_videos(videos, root, output, str(cfg.suffix), g.scale, codec)
    video_jobs = check_jobs(
        [Job(s, t) for s, t in video_jobs], bool(cfg.overwrite), bool(cfg.skip_existing)
    )
    for folder in sorted({job.target.parent for job in [*jobs, *video_jobs]}):
        remove_stale_parts(folder)  # hidden .part files of a killed run into the same folder
    print(
        f"{g.method} x{g.scale} ({'luma' if g.channels == 1 else 'RGB'}) on {upscaler.device}: "
        f"{len(jobs)} image(s)"
        + (f", {len(video_jobs)} video(s)" if video_jobs else "")
        + f" -> {output}"
    )
    start = time.perf_counter()
    written, failed = _upscale_images(upscaler, jobs, cfg)
    videos_written, videos_failed = upscale_videos(
        upscaler, [(j.source, j.target) for j in video_jobs], cfg
    )
    written += videos_written
    failed += videos_failed
    seconds = time.perf_counter() - start
    print(
        f"wrote {len(written)} image(s) to {output} in {seconds:.1f} s"
        + (f"; skipped {len(failed)} unreadable" if failed else "")
    )
    return written


def _upscale_images(upscaler: Upscaler, jobs: list[Job], cfg: DictConfig):
    """Each image job, written atomically; unreadable inputs are skipped only with skip_bad."""
    written, failed = [], []
    for job in _file_progress(jobs, bool(cfg.progress)):
        try:
            image = read_image(job.source)
        except ImageLoadError as err:
            if not cfg.skip_bad:
                raise
            log.warning("skipping %s", err)
            failed.append(job.source)
            continue
        sr = upscaler.upscale(image)
        out_fmt = job.target.suffix.lower().lstrip(".")
        job.target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(job.target, bool(cfg.overwrite)) as tmp:
            write_image(sr, tmp, out_fmt)
        written.append(job.target)
        log.debug("%s -> %s (%d tiles)", job.source, job.target, len(upscaler.last_tiles))
    return written, failed


def _file_progress(jobs: list[Job], enabled: bool):
    if not enabled or len(jobs) <= 1:
        return jobs
    from tqdm.auto import tqdm

    return tqdm(jobs, desc="images", unit="img", dynamic_ncols=True, disable=None)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="upscale")
def hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except file_errors() as err:
        hint = literal_hint(err)  # scale=abc: name the key, not only the value
        print(f"sr-upscale: {err}" + (f" ({hint})" if hint else ""), file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None


def main() -> None:
    """``python -m sr_lightning.apps.upscale``: the config is checked first (apps/cli.py)."""
    from sr_lightning.apps.cli import upscale

    upscale()


if __name__ == "__main__":
    main()
