"""Datasets over decoded HR images: random training patches and whole evaluation images.

Both hand out uint8 HR tensors only. Degradation (bicubic downscaling, augmentation,
float conversion) happens batched on the device, in :mod:`sr_lightning.data.degradation`,
so workers do nothing but slicing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from sr_lightning.data.images import list_images, load_images
from sr_lightning.metrics import to_luma_uint8

log = logging.getLogger(__name__)


def convert_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (C, H, W) into the model's colour space: MATLAB luma (1) or RGB (3).

    A grey image is its own luma (no YCbCr formula), and is replicated for RGB models.
    """
    if channels == 1:
        return to_luma_uint8(image)
    if channels == 3:
        return image.expand(3, -1, -1).contiguous() if image.shape[0] == 1 else image
    raise ValueError(f"channels must be 1 (luma) or 3 (RGB), got {channels}")


@dataclass
class ImageSet:
    """A named set of decoded uint8 images (C, H, W), all in one colour space."""

    name: str
    names: list[str] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def resolve_dir(spec: str | Path, data_dir: str | Path) -> Path:
    """A set name (``Set5``) lives under the data root; a path is taken as given."""
    path = Path(spec).expanduser()
    return path if path.is_absolute() or str(spec).startswith(".") else Path(data_dir) / path


def set_spec(spec: str | Mapping, data_dir: str | Path) -> tuple[str, Path, list[str] | None]:
    """Normalise a set entry: ``"Set5"`` or ``{name, dir, include}`` -> (name, dir, include)."""
    if isinstance(spec, str | Path):
        folder = resolve_dir(spec, data_dir)
        return folder.name, folder, None
    unknown = set(spec) - {"name", "dir", "include"}
    if unknown or "dir" not in spec:
        raise ValueError(
            f"a set entry is a folder name or a mapping with keys name/dir/include; got {dict(spec)}"
        )
    folder = resolve_dir(spec["dir"], data_dir)
    include = list(spec["include"]) if spec.get("include") is not None else None
    return str(spec.get("name") or folder.name), folder, include


def load_set(
    spec: str | Mapping,
    data_dir: str | Path,
    channels: int,
    skip_bad: bool = False,
    recursive: bool = False,
) -> ImageSet:
    """Decode every image of one set once, converted to the model's colour space."""
    name, folder, include = set_spec(spec, data_dir)
    names, images = load_images(list_images(folder, include, recursive), skip_bad=skip_bad)
    if not images:
        raise FileNotFoundError(f"every image in {folder} was unreadable (data.skip_bad=true).")
    return ImageSet(name, names, [convert_channels(img, channels) for img in images])


def merge_sets(name: str, sets: Sequence[ImageSet]) -> ImageSet:
    merged = ImageSet(name)
    for image_set in sets:
        merged.names += [f"{image_set.name}/{n}" for n in image_set.names]
        merged.images += image_set.images
    return merged


class PatchDataset(Dataset):
    """Random HR crops: ``patches_per_image`` per image and epoch, so small sets give full epochs.

    The crop position is drawn in ``__getitem__`` from torch's RNG, which Lightning seeds per
    worker (``seed_everything(workers=True)``), so runs are reproducible with a seed.
    """

    def __init__(
        self,
        images: ImageSet,
        patch_size: int,
        patches_per_image: int = 1,
        small: str = "skip",
        random_crops: bool = True,
    ) -> None:
        if small not in ("skip", "error"):
            raise ValueError(f"data.small_images must be 'skip' or 'error', got {small!r}")
        keep = []
        for name, image in zip(images.names, images.images, strict=True):
            if min(image.shape[-2:]) >= patch_size:
                keep.append(image)
                continue
            msg = (
                f"training image {name} ({image.shape[-1]}x{image.shape[-2]}) is smaller than "
                f"data.patch_size={patch_size}"
            )
            if small == "error":
                raise ValueError(
                    f"{msg}. Remove it, lower the patch size, or set data.small_images=skip."
                )
            log.warning("%s: skipped", msg)
        if not keep:
            raise ValueError(
                f"no training image of {images.name} is at least {patch_size}px on each side; "
                "lower data.patch_size."
            )
        self.images = keep
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.random_crops = random_crops

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index // self.patches_per_image]
        p = self.patch_size
        # fixed crops (a generator seeded by the index) let `debug=overfit` see the same batch
        gen = None if self.random_crops else torch.Generator().manual_seed(index)
        top = int(torch.randint(image.shape[-2] - p + 1, (), generator=gen))
        left = int(torch.randint(image.shape[-1] - p + 1, (), generator=gen))
        return image[:, top : top + p, left : left + p]


class EvalDataset(Dataset):
    """Whole HR images, modcropped to a multiple of the scale, as the papers evaluate them."""

    def __init__(self, images: ImageSet, scale: int) -> None:
        self.images = images
        self.scale = scale

    @property
    def name(self) -> str:
        return self.images.name

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images.images[index]
        h, w = image.shape[-2:]
        h, w = h - h % self.scale, w - w % self.scale
        return {"hr": image[:, :h, :w], "index": index, "name": self.images.names[index]}
