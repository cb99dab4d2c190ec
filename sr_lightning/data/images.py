"""Decoding HR images from disk into uint8 tensors, with clear errors for bad files.

Every loader in the project goes through :func:`load_image`, so that grey, palette,
RGBA, 16-bit and EXIF-rotated files are handled the same way everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


SKIP_ADVICE = (
    " Replace or remove the file, or set data.skip_bad=true to skip unreadable images with a "
    "warning."
)


class ImageLoadError(ValueError):
    """An image file that cannot be decoded; the message names the file and the fix.

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
    if include is not None:
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


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Bring 16-bit / 32-bit integer or float images to 8-bit levels by rounding."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    # 16-bit data (also stored in 32-bit 'I' mode by Pillow): 65535 maps to 255.
    return np.clip(np.rint(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def decode_pil(image: Image.Image) -> np.ndarray:
    """A Pillow image as a uint8 array (H, W) for grey or (H, W, 3) for colour.

    Alpha is dropped (HR training images are opaque by convention), palettes are expanded,
    and EXIF orientation is applied so that images look as a viewer shows them.
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L"))
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _to_uint8(np.asarray(image))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def load_image(path: str | Path) -> torch.Tensor:
    """Decode one file into a uint8 tensor (C, H, W) with C = 1 (grey) or 3 (RGB)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            array = decode_pil(image)
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as err:
        raise ImageLoadError(f"cannot decode image {path}: {err}.") from err
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageLoadError(f"image {path} is empty ({array.shape[1]}x{array.shape[0]}).")
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
