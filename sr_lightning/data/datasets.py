"""Datasets over decoded HR images: random training patches and whole evaluation images.

They hand out uint8 HR tensors, or only the crop positions when the training set lives on
the device (:mod:`sr_lightning.data.device_cache`). Degradation (bicubic downscaling,
augmentation, float conversion) happens batched on the device, in
:mod:`sr_lightning.data.degradation`, so workers do nothing but slicing.

Where the decoded pixels live is the set's cache mode (``data.cache``): ``ram`` (tensors in
this process), ``disk`` (a memory-mapped uint8 cache, :mod:`sr_lightning.data.cache`),
``none`` (decoded from the file on every access), or ``auto``: RAM unless the decoded set is
larger than ``AUTO_RAM_LIMIT_BYTES`` and a cache folder is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from sr_lightning.common.color import to_luma_uint8
from sr_lightning.common.errors import UserError
from sr_lightning.common.pixels import modcrop
from sr_lightning.data.cache import (
    MappedImage,
    build_or_open,
    default_workers,
    estimate_decoded_bytes,
    ordered_map,
)
from sr_lightning.data.images import ImageLoadError, list_images, load_image

log = logging.getLogger(__name__)

CACHE_MODES = ("auto", "ram", "disk", "none")
# `auto` keeps a set in RAM up to this many decoded bytes (T91, BSD200, benchmark sets are
# tens of MB); bigger sets (DIV2K train: about 6 GB) go to the memory-mapped disk cache, which
# every rank and worker on a node shares instead of holding its own copy.
AUTO_RAM_LIMIT_BYTES = 1 << 30
# Pillow modes that load_image decodes to one channel (alpha dropped, 16 bits rounded)
GREY_MODES = frozenset({"1", "L", "LA", "I", "F"})


def convert_channels(image: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 (..., C, H, W) into the model's colour space: MATLAB luma (1) or RGB (3).

    A grey image is its own luma (no YCbCr formula), and is replicated for RGB models.
    ``None`` keeps the image as decoded (grey or RGB): what an evaluation set is kept in
    when a degradation comes before the colour conversion (``eval_pair`` converts).
    """
    if channels is None:
        return image
    if channels == 1:
        return to_luma_uint8(image)
    if channels == 3:
        if image.shape[-3] != 1:
            return image
        return image.expand(*image.shape[:-3], 3, -1, -1).contiguous()
    raise ValueError(f"channels must be 1 (luma) or 3 (RGB), got {channels}")


@dataclass(frozen=True)
class FileImage:
    """An image decoded from its file on every access (``data.cache=none``)."""

    path: str
    channels: int | None
    shape: tuple[int, int, int]

    def load(self) -> torch.Tensor:
        return convert_channels(load_image(self.path), self.channels)


class ImageList(Sequence[torch.Tensor]):
    """uint8 images (C, H, W) wherever they live: tensors in RAM, memory-mapped, or files.

    Indexing gives a tensor; slicing and ``+`` give ImageLists. Shapes are known without
    touching pixels, and pickling sends references for mapped or file images, so a
    DataLoader worker never receives a copy of a large set.
    """

    def __init__(self, items: Iterable[torch.Tensor | MappedImage | FileImage] = ()) -> None:
        self._items = list(items._items if isinstance(items, ImageList) else items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ImageList(self._items[index])
        item = self._items[index]
        return item if isinstance(item, torch.Tensor) else item.load()

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self._items)):
            yield self[i]

    def __add__(self, other: Iterable) -> ImageList:
        return ImageList([*self._items, *ImageList(other)._items])

    def __radd__(self, other: Iterable) -> ImageList:
        return ImageList([*ImageList(other)._items, *self._items])

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(self._items[index].shape)

    def select(self, indices: Iterable[int]) -> ImageList:
        return ImageList([self._items[i] for i in indices])

    @property
    def storage(self) -> str:
        """Where the pixels live: ram, disk, file, or a ``+``-joined mix."""
        kinds = {
            "ram"
            if isinstance(i, torch.Tensor)
            else "disk"
            if isinstance(i, MappedImage)
            else "file"
            for i in self._items
        }
        return "+".join(sorted(kinds)) or "empty"

    def __repr__(self) -> str:
        return f"ImageList({len(self)} images, {self.storage})"


@dataclass
class ImageSet:
    """A named set of decoded uint8 images (C, H, W), all in one colour space."""

    name: str
    names: list[str] = field(default_factory=list)
    images: ImageList = field(default_factory=ImageList)
    # a paired set's given LR images, one per HR image (None: LR made by the degradation)
    lr: ImageList | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, ImageList):
            self.images = ImageList(self.images)
        if self.lr is not None and not isinstance(self.lr, ImageList):
            self.lr = ImageList(self.lr)

    def head(self, count: int, name: str) -> ImageSet:
        """The first ``count`` images (negative: all but the last ``-count``) as a set."""
        lr = self.lr[:count] if self.lr is not None else None
        return ImageSet(name, self.names[:count], self.images[:count], lr)

    def tail(self, count: int, name: str) -> ImageSet:
        """The last ``count`` images as a set."""
        lr = self.lr[-count:] if self.lr is not None else None
        return ImageSet(name, self.names[-count:], self.images[-count:], lr)

    def __len__(self) -> int:
        return len(self.images)


def resolve_dir(spec: str | Path, data_dir: str | Path) -> Path:
    """A set name (``Set5``) lives under the data root; a path is taken as given."""
    path = Path(spec).expanduser()
    return path if path.is_absolute() or str(spec).startswith(".") else Path(data_dir) / path


PAIRED_KEYS = ("name", "hr", "lr")


def set_spec(spec: str | Mapping, data_dir: str | Path) -> tuple[str, Path, list[str] | None]:
    """Normalise a set entry: ``"Set5"`` or ``{name, dir, include}`` -> (name, dir, include).

    A paired entry ``{name, hr, lr}`` gives its HR folder as ``dir`` (:func:`paired_dirs`)."""
    if isinstance(spec, str | Path):
        folder = resolve_dir(spec, data_dir)
        return folder.name, folder, None
    pair = paired_dirs(spec, data_dir)
    if pair is not None:
        return str(spec.get("name") or pair[0].name), pair[0], None
    unknown = set(spec) - {"name", "dir", "include"}
    if unknown or "dir" not in spec:
        raise ValueError(
            f"a set entry is a folder name or a mapping with keys name/dir/include; got {dict(spec)}"
        )
    folder = resolve_dir(spec["dir"], data_dir)
    include = list(spec["include"]) if spec.get("include") is not None else None
    return str(spec.get("name") or folder.name), folder, include


def paired_dirs(spec: str | Mapping, data_dir: str | Path) -> tuple[Path, Path] | None:
    """The (HR, LR) folders of a paired entry ``{name, hr: DIR, lr: DIR}``; None otherwise."""
    if isinstance(spec, str | Path) or not ({"hr", "lr"} & set(spec)):
        return None
    if set(spec) - set(PAIRED_KEYS) or not {"hr", "lr"} <= set(spec):
        raise ValueError(f"a paired set entry is {{name: ..., hr: DIR, lr: DIR}}; got {dict(spec)}")
    return resolve_dir(spec["hr"], data_dir), resolve_dir(spec["lr"], data_dir)


def _lr_key(stem: str, scale: int) -> str:
    """The HR stem an LR file pairs with: DIV2K's ``0801x4`` pairs with ``0801``."""
    suffix = f"x{scale}"
    return stem[: -len(suffix)] if stem.endswith(suffix) and len(stem) > len(suffix) else stem


def pair_files(
    hr_files: Sequence[Path], lr_files: Sequence[Path], scale: int
) -> list[tuple[Path, Path]]:
    """(HR, LR) files paired by stem (``0801.png`` <-> ``0801.png`` or ``0801x4.png``).

    An HR or LR image without a partner, or two LR images for one HR, is an error naming them.
    """
    by_key: dict[str, Path] = {}
    for path in lr_files:
        key = _lr_key(path.stem, scale)
        if key in by_key:
            raise UserError(f"LR images {by_key[key]} and {path} both pair with HR image {key!r}")
        by_key[key] = path
    pairs = []
    for hr in hr_files:
        lr = by_key.pop(hr.stem, None)
        if lr is None:
            folder = lr_files[0].parent if lr_files else "the LR folder"
            raise UserError(
                f"HR image {hr} has no LR partner in {folder} "
                f"(looked for {hr.stem}.* and {hr.stem}x{scale}.*)"
            )
        pairs.append((hr, lr))
    if by_key:
        lr = next(iter(by_key.values()))
        folder = hr_files[0].parent if hr_files else "the HR folder"
        raise UserError(f"LR image {lr} has no HR partner in {folder} (pairing is by file stem)")
    return pairs


def check_pair_size(
    hr: Path, hr_size: tuple[int, int], lr: Path, lr_size: tuple[int, int], scale: int
) -> None:
    """LR (h, w) times ``scale`` must be the HR (H, W) cut to a multiple of ``scale``."""
    (big_h, big_w), (h, w) = hr_size, lr_size
    cropped = (big_h - big_h % scale, big_w - big_w % scale)
    if (h * scale, w * scale) != cropped:
        raise UserError(
            f"LR image {lr} ({w}x{h}) does not fit HR image {hr} ({big_w}x{big_h}) at x{scale}: "
            f"x{scale} it is {w * scale}x{h * scale}, the HR cut to a multiple of {scale} is "
            f"{cropped[1]}x{cropped[0]}"
        )


def load_paired_set(
    name: str,
    folders: tuple[Path, Path],
    channels: int | None,
    scale: int,
    skip_bad: bool = False,
    recursive: bool = False,
) -> ImageSet:
    """A paired set's HR images and their given LR images, decoded into RAM."""
    pairs = pair_files(
        list_images(folders[0], None, recursive), list_images(folders[1], None, recursive), scale
    )
    for hr, lr in pairs:  # from the headers, before anything is decoded
        check_pair_size(
            hr, header_shape(hr, channels)[1:], lr, header_shape(lr, channels)[1:], scale
        )
    decode = image_decoder(channels, skip_bad)
    decoded = list(ordered_map(decode, [p for pair in pairs for p in pair], default_workers()))
    names, images, lrs = [], [], []
    for (hr, _), hr_image, lr_image in zip(pairs, decoded[::2], decoded[1::2], strict=True):
        if hr_image is None or lr_image is None:
            continue  # skip_bad: reported by the decoder
        names.append(hr.stem)
        images.append(hr_image)
        lrs.append(lr_image)
    if not images:
        raise FileNotFoundError(f"every pair in {folders[0]} was unreadable (data.skip_bad=true).")
    log.debug("paired set %s: %d images", name, len(images))
    return ImageSet(name, names, ImageList(images), ImageList(lrs))


def image_decoder(channels: int | None, skip_bad: bool) -> Callable[[Path], torch.Tensor | None]:
    """path -> uint8 (C, H, W) in the model's colour space; None for a bad file with skip_bad."""

    def decode(path: Path) -> torch.Tensor | None:
        try:
            return convert_channels(load_image(path), channels)
        except ImageLoadError as err:
            if not skip_bad:
                raise
            log.warning("skipping %s", err.reason)
            return None

    return decode


def header_shape(path: Path, channels: int | None) -> tuple[int, int, int]:
    """(C, H, W) that decoding will give, from the file header only (EXIF rotation included);
    ``channels=None``: the file's own (1 for grey, 3 otherwise, as ``load_image`` decodes)."""
    try:
        with Image.open(path) as image:
            w, h = image.size
            if channels is None:
                channels = 1 if image.mode in GREY_MODES or image.mode.startswith("I;16") else 3
            if image.format == "PNG":  # Pillow's getexif() would decode a PNG to find eXIf
                exif = Image.Exif()
                if image.info.get("exif"):
                    exif.load(image.info["exif"])
            else:
                exif = image.getexif()
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(f"cannot read image header {path}: {err}.") from err
    if exif.get(0x0112, 1) in (5, 6, 7, 8):  # orientations that transpose the image
        w, h = h, w
    return channels, h, w


def _header_shapes(
    files: Sequence[Path], channels: int | None, skip_bad: bool, quiet: bool = False
) -> tuple[list[Path], list[tuple[int, int, int]]]:
    """Shapes from the headers; a bad file raises, or with ``skip_bad`` is left out (and
    reported, unless ``quiet``: a scan whose caller decodes, and reports, afterwards)."""
    kept, shapes = [], []
    for path in files:
        try:
            shapes.append(header_shape(path, channels))
        except ImageLoadError as err:
            if not skip_bad:
                raise
            if not quiet:
                log.warning("skipping %s", err.reason)
            continue
        kept.append(path)
    return kept, shapes


def resolve_cache_mode(
    mode: str, files: Sequence[Path], channels: int | None, cache_dir: str | Path | None
) -> str:
    """The concrete mode (ram, disk or none) for one set under ``data.cache=mode``."""
    if mode not in CACHE_MODES:
        raise ValueError(f"data.cache must be one of {', '.join(CACHE_MODES)}; got {mode!r}")
    if mode == "disk" and not cache_dir:
        raise ValueError(
            "data.cache=disk needs data.cache_dir (default ${paths.cache_dir}, $SR_CACHE_DIR)."
        )
    if mode != "auto":
        return mode
    if not cache_dir:
        return "ram"
    # a header that does not parse counts as empty here; decoding reports it properly
    _, shapes = _header_shapes(files, channels, skip_bad=True, quiet=True)
    return "disk" if estimate_decoded_bytes(shapes) > AUTO_RAM_LIMIT_BYTES else "ram"


def load_set(
    spec: str | Mapping,
    data_dir: str | Path,
    channels: int | None,
    skip_bad: bool = False,
    recursive: bool = False,
    cache: str = "ram",
    cache_dir: str | Path | None = None,
    scale: int | None = None,
) -> ImageSet:
    """One set's images in the model's colour space, stored as ``cache`` says (module doc).

    A paired entry (``{name, hr, lr}``) is read into RAM with its given LR images, paired
    and checked at ``scale`` (:func:`load_paired_set`)."""
    name, folder, include = set_spec(spec, data_dir)
    pair = paired_dirs(spec, data_dir)
    if pair is not None:
        if scale is None:
            raise ValueError(f"paired set {name}: its LR images need the scale")
        return load_paired_set(name, pair, channels, scale, skip_bad, recursive)
    files = list_images(folder, include, recursive)
    mode = resolve_cache_mode(cache, files, channels, cache_dir)
    decode = image_decoder(channels, skip_bad)
    if mode == "disk":
        names, images = build_or_open(files, decode, cache_dir, name, channels, skip_bad)
    elif mode == "none":
        files, shapes = _header_shapes(files, channels, skip_bad)
        names = [p.stem for p in files]
        images = [FileImage(str(p), channels, s) for p, s in zip(files, shapes, strict=True)]
    else:
        decoded = list(ordered_map(decode, files, default_workers()))
        names = [p.stem for p, img in zip(files, decoded, strict=True) if img is not None]
        images = [img for img in decoded if img is not None]
    if not images:
        raise FileNotFoundError(f"every image in {folder} was unreadable (data.skip_bad=true).")
    log.debug("set %s: %d images (%s)", name, len(images), mode)
    return ImageSet(name, names, ImageList(images))


def prepare_cache(
    spec: str | Mapping,
    data_dir: str | Path,
    channels: int | None,
    skip_bad: bool = False,
    recursive: bool = False,
    cache: str = "ram",
    cache_dir: str | Path | None = None,
    scale: int | None = None,
) -> bool:
    """Build the set's disk cache if its mode is disk (nothing otherwise); True if it is.
    Paired sets live in RAM."""
    if paired_dirs(spec, data_dir) is not None:
        return False
    _, folder, include = set_spec(spec, data_dir)
    files = list_images(folder, include, recursive)
    if resolve_cache_mode(cache, files, channels, cache_dir) != "disk":
        return False
    load_set(spec, data_dir, channels, skip_bad, recursive, "disk", cache_dir)
    return True


def merge_sets(name: str, sets: Sequence[ImageSet]) -> ImageSet:
    """One set of several; it keeps given LR images only when every set has them."""
    merged = ImageSet(name)
    paired = bool(sets) and all(s.lr is not None for s in sets)
    merged.lr = ImageList() if paired else None
    for image_set in sets:
        merged.names += [f"{image_set.name}/{n}" for n in image_set.names]
        merged.images = merged.images + image_set.images
        if paired:
            merged.lr = merged.lr + image_set.lr
    return merged


class CropPositions(Dataset):
    """Where the training patches are cut: ``(image, top, left)`` rows, a batch at a time.

    ``patches_per_image`` positions per image and epoch, so small sets still give full epochs.
    Positions are drawn for the whole batch with one call to torch's RNG; the training loader
    (:mod:`sr_lightning.data.resumable`) hands out keyed indices that seed that draw, so runs
    are reproducible with a seed and resume mid-epoch exactly. Fixed
    crops (``random_crops=False``, a generator seeded by the index) let ``debug=overfit`` see the
    same batch every step.

    With ``data.device_cache`` the loader hands out only these rows and the crops are cut on
    the accelerator (:mod:`sr_lightning.data.device_cache`); :class:`PatchDataset` cuts the
    same crops from host memory.
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
        for i, name in enumerate(images.names):
            h, w = images.images.shape(i)[-2:]
            if min(h, w) >= patch_size:
                keep.append(i)
                continue
            msg = f"training image {name} ({w}x{h}) is smaller than data.patch_size={patch_size}"
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
        self.images = images.images.select(keep)
        self.kept = keep  # indices into ``images`` of the images kept
        # the number of valid top (left) positions of each image, for vectorised drawing
        sizes = [self.images.shape(i)[-2:] for i in range(len(keep))]
        self.positions = torch.tensor(sizes, dtype=torch.float64) - (patch_size - 1)
        self.patch_size = patch_size
        self.patches_per_image = patches_per_image
        self.random_crops = random_crops

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]):
        return self.crop_positions(indices)

    def crop_positions(self, indices: Sequence[int] | Sequence[tuple[int, int]]) -> torch.Tensor:
        """int64 rows ``(image, top, left)``, uniform over each image's valid positions.

        ``indices`` are plain indices (positions from torch's RNG) or the ``(index, key)``
        pairs of :class:`~sr_lightning.data.resumable.KeyedSampler`: then the batch's
        positions come from a generator seeded by its first key, so a resumed run cuts the
        same crops whichever worker cuts them.
        """
        generator = None
        if indices and isinstance(indices[0], tuple | list):
            generator = torch.Generator().manual_seed(int(indices[0][1]))
            indices = [int(index) for index, _ in indices]
        image = torch.as_tensor(indices, dtype=torch.int64) // self.patches_per_image
        if self.random_crops:
            fractions = torch.rand(len(indices), 2, dtype=torch.float64, generator=generator)
        else:
            fractions = torch.stack(
                [
                    torch.rand(2, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
                    for i in indices
                ]
            )
        top_left = (fractions * self.positions[image]).to(torch.int64)
        return torch.cat([image.unsqueeze(1), top_left], dim=1)


class PatchDataset(CropPositions):
    """Random HR crops cut from host memory (RAM, the memory-mapped cache, or files).

    The DataLoader calls ``__getitems__`` once per batch instead of once per sample, so the
    per-sample Python is one slice.
    """

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        p = self.patch_size
        crops = []
        for index, top, left in self.crop_positions(indices).tolist():
            crops.append(self.images[index][:, top : top + p, left : left + p])
        return crops


class EvalDataset(Dataset):
    """Whole HR images, modcropped to a multiple of the scale, as the papers evaluate them.

    The modcrop here only saves copying the cut-off rows to the device; the batch's LR/HR
    pair is :func:`sr_lightning.data.eval_pair.eval_pair`'s (``make_eval_batch``).
    """

    def __init__(self, images: ImageSet, scale: int) -> None:
        self.images = images
        self.scale = scale

    @property
    def name(self) -> str:
        return self.images.name

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = modcrop(self.images.images[index], self.scale)
        item = {"hr": image, "index": index, "name": self.images.names[index]}
        if self.images.lr is not None:  # a paired set: its LR as given
            item["lr"] = self.images.lr[index]
        return item
