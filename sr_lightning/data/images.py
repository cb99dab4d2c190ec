"""Decoding images from disk, with clear errors for bad files: the project's one decoder.

:func:`read_image` keeps everything a file holds (8 or 16 bits, alpha, EXIF orientation
applied) for ``sr-upscale``; :func:`load_image` reduces that to the opaque uint8 tensors that
training and evaluation use. So grey, palette, RGBA, 16-bit and EXIF-rotated files are
handled the same way everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# image files a folder of images may hold that are not read as training or test images: said
# once per folder, so that a set does not silently shrink (other files, .txt, .csv, are ignored)
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset(
    {".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".ico", ".psd", ".exr", ".dng"}
)
_WARNED_FOLDERS: set[Path] = set()


SKIP_ADVICE = (
    " Replace or remove the file, or set data.skip_bad=true to skip unreadable images with a "
    "warning."
)


class ImageLoadError(ValueError):
    """An image file that cannot be decoded; the message names the file and the fix.

    :func:`read_image` (shared with sr-upscale) gives no advice; :func:`load_image`, the
    data sets' decoder, adds the advice to skip unreadable images.

    ``reason`` is the message without the advice, for the warning of a skipped file (which
    must not suggest data.skip_bad=true: it is set).
    """

    def __init__(self, reason: str, advice: str = SKIP_ADVICE) -> None:
        super().__init__(reason + advice)
        self.reason = reason


def download_hint(folder: Path) -> str:
    """How to get a missing set that sr_lightning.data.download knows (DIV2K)."""
    from sr_lightning.data.download import DATASETS

    if folder.name not in DATASETS:
        return ""
    return (
        f" {folder.name} can be downloaded: python -m sr_lightning.data.download {folder.name} "
        f"--data-dir {folder.parent} (docs/data.md)."
    )


def list_images(
    folder: str | Path, include: Sequence[str] | None = None, recursive: bool = False
) -> list[Path]:
    """Image files of ``folder`` in sorted order; non-image files are ignored.

    ``include`` restricts the list to the given file names (or stems), in the order given,
    so configs can pin the exact images of a split.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder not found: {folder}. Check paths.data_dir (set $SR_DATA_DIR) "
            "or the set name in the data config." + download_hint(folder)
        )
    pattern = "**/*" if recursive else "*"
    files = sorted(
        p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if include is None:  # a listed split names its files: the others are not skipped
        warn_skipped(folder, pattern)
    else:
        by_name = {p.name: p for p in files} | {p.stem: p for p in files}
        missing = [name for name in include if name not in by_name]
        if missing:
            raise FileNotFoundError(f"{folder}: listed images not found: {missing}")
        files = [by_name[name] for name in include]
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder}. "
            "Put HR images there or point the data config to another folder."
        )
    return files


_EXIF_ORIENTATION = 0x0112

# Pillow decodes 16-bit colour PNGs to 8 bits. Its PNG decoder unfilters rows by the raw
# mode's pixel size, so decoding the same stream twice, with the big-endian raw mode (high
# bytes) and the little-endian one (which takes the other byte of each sample: the low
# bytes), gives all 16 bits; grey+alpha (4 bytes a pixel) decodes whole as 8-bit RGBA.
_WIDE_PNG = {"RGB;16B": ("RGB;16L", 3), "RGBA;16B": ("RGBA;16L", 4), "LA;16B": ("RGBA", 2)}


def warn_skipped(folder: Path, pattern: str = "*") -> list[Path]:
    """Warn, once per folder, about image files of a type the sets do not read (a .gif)."""
    skipped = sorted(
        p
        for p in folder.glob(pattern)
        if p.suffix.lower() in UNSUPPORTED_IMAGE_EXTENSIONS and p.is_file()
    )
    key = folder.resolve()
    if skipped and key not in _WARNED_FOLDERS:
        _WARNED_FOLDERS.add(key)
        kinds = ", ".join(sorted({p.suffix.lower() for p in skipped}))
        names = ", ".join(p.name for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        log.warning(
            "%s: skipped %d file(s) of a type the sets do not read (%s): %s. Convert them to "
            "PNG to use them (read: %s)",
            folder,
            len(skipped),
            kinds,
            names,
            ", ".join(sorted(IMAGE_EXTENSIONS)),
        )
    return skipped


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, C) uint8 or uint16, C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.

    EXIF orientation is applied. Palettes expand to RGB(A); CMYK and other colour modes
    become RGB; 16-bit PNGs (grey, grey+alpha, RGB, RGBA) and 16-bit grey TIFFs stay 16-bit.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:  # an animated GIF / WebP / PNG, a multi-page TIFF
                log.warning(
                    "%s has %d frames (an animation or pages); only the first is used", path, frames
                )
            rawmode = _png_rawmode(image)  # before getexif(), which may decode the PNG
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            if rawmode in _WIDE_PNG:
                array = _read_wide_png(path, rawmode)
            else:
                image.load()
                array = _pil_to_array(image, path)
    except Image.DecompressionBombError as err:
        raise ImageLoadError(
            f"{path} has more pixels than Pillow's safety limit ({err}); if you trust the file, "
            "raise PIL.Image.MAX_IMAGE_PIXELS in your own script.",
            advice="",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageLoadError):
            raise
        raise ImageLoadError(f"cannot decode image {path}: {err}.", advice="") from err
    if array.ndim == 2:
        array = array[:, :, None]
    if 0 in array.shape:
        raise ImageLoadError(
            f"image {path} is empty ({array.shape[1]}x{array.shape[0]}).", advice=""
        )
    return np.ascontiguousarray(orient(array, orientation))


def _png_rawmode(image: Image.Image) -> str | None:
    if image.format != "PNG" or len(image.tile) != 1:
        return None
    args = image.tile[0].args if hasattr(image.tile[0], "args") else image.tile[0][3]
    return args if isinstance(args, str) else None


def _decode_with_rawmode(path: Path, rawmode: str | None) -> np.ndarray:
    with Image.open(path) as image:
        if rawmode is not None:
            tile = image.tile[0]
            image.tile = [tile._replace(args=rawmode)]
        image.load()
        return np.asarray(image)


def _read_wide_png(path: Path, rawmode: str) -> np.ndarray:
    low_mode, channels = _WIDE_PNG[rawmode]
    if rawmode == "LA;16B":
        raw = _decode_with_rawmode(path, "RGBA").astype(np.uint16)  # L_hi, L_lo, A_hi, A_lo
        return np.stack([raw[..., 0] << 8 | raw[..., 1], raw[..., 2] << 8 | raw[..., 3]], axis=-1)
    high = _decode_with_rawmode(path, None).astype(np.uint16)
    low = _decode_with_rawmode(path, low_mode).astype(np.uint16)
    return (high << 8 | low)[..., :channels]


def _pil_to_array(image: Image.Image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":  # 16-bit data that Pillow holds in 32 bits
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    if mode == "F":
        raise ImageLoadError(
            f"{path} holds 32-bit float pixels of unknown range; convert it to a 8- or 16-bit "
            "PNG first.",
            advice="",
        )
    return np.asarray(image.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, RGBX, …


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to an (H, W, C) array, as ``ImageOps.exif_transpose``."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    return ops[orientation](array) if orientation in ops else array


def load_image(path: str | Path) -> torch.Tensor:
    """Decode one file into a uint8 tensor (C, H, W) with C = 1 (grey) or 3 (RGB).

    Alpha is dropped (HR training images are opaque by convention) and 16-bit levels are
    rounded to 8 bits (65535 -> 255).
    """
    try:
        array = read_image(path)
    except ImageLoadError as err:
        raise ImageLoadError(err.reason) from err.__cause__  # with the training-set advice
    if array.shape[2] in (2, 4):
        array = array[:, :, :-1]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def load_images(
    paths: Iterable[Path], skip_bad: bool = False
) -> tuple[list[str], list[torch.Tensor]]:
    """Decode many files; with ``skip_bad`` unreadable ones are skipped with a warning."""
    names, images = [], []
    for path in paths:
        try:
            images.append(load_image(path))
        except ImageLoadError as err:
            if not skip_bad:
                raise
            log.warning("skipping %s", err.reason)
            continue
        names.append(Path(path).stem)
    return names, images
