"""The LightningDataModule: decoded images cached once, uint8 batches out, degradation on device."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, DistributedSampler

from sr_lightning.common.errors import UserError
from sr_lightning.data.datasets import (
    CropPositions,
    EvalDataset,
    ImageSet,
    PatchDataset,
    load_set,
    merge_sets,
    prepare_cache,
    set_spec,
)
from sr_lightning.data.degradation import to_float
from sr_lightning.data.degradations.model import Degradation
from sr_lightning.data.degradations.seeded import SeededLR, stored_channels
from sr_lightning.data.device_cache import (
    PackedImages,
    free_device_bytes,
    is_crop_positions,
    packed_bytes,
    use_device_cache,
)
from sr_lightning.data.paired import PairedPatchDataset, check_given_lr, use_paired
from sr_lightning.data.resumable import ResumableLoader, resumable_loader

log = logging.getLogger(__name__)


class UnpaddedDistributedSampler(DistributedSampler):
    """Shards an evaluation set over ranks without padding, so no image is counted twice.

    PyTorch's DistributedSampler repeats images to even out the ranks, which biases a mean
    over images; here rank r simply takes images r, r + world, r + 2 world, ...
    """

    def __init__(self, dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self):
        return iter(range(self.rank, self.total_size, self.num_replicas))


def split_holdout(
    train: ImageSet, n: int, as_evaluated: ImageSet | None = None
) -> tuple[ImageSet, ImageSet]:
    """The last ``n`` training images as a validation set, and the rest for training.
    ``as_evaluated``: the training folders decoded as an evaluation set, where that differs
    (under BD / DN a grey file stays grey), so the held-out images are scored like any other."""
    if n >= len(train):
        raise ValueError(f"data.val_holdout={n} leaves no training image")
    holdout = (as_evaluated or train).tail(n, "holdout")
    return holdout, train.head(-n, "train")


class SRDataModule(SeededLR, LightningDataModule):
    """Training patches and evaluation sets for one experiment.

    ``train_sets``, ``val_sets`` and ``test_sets`` are lists of set entries: a folder name under
    ``data_dir`` (``Set5``), a path, or a mapping ``{name, dir, include}``. Batch sizes are per
    device (under DDP the global batch is ``batch_size * world_size``).

    ``cache`` says where decoded images live (``auto``, ``ram``, ``disk``, ``none``; see
    :mod:`sr_lightning.data.datasets`); disk caches go under ``cache_dir`` and are built in
    ``prepare_data`` (once per node) or, failing that, by whichever rank locks them first.

    ``device_cache`` (``auto``, ``true``, ``false``) packs the training images onto the
    accelerator and cuts the crops there, so the loader hands out only crop positions
    (:mod:`sr_lightning.data.device_cache`); ``auto`` does so on a GPU with room to spare.
    ``lr_model``: the ``degradation=`` group; training and evaluation batches are made by
    :class:`~sr_lightning.data.degradations.seeded.SeededLR`.
    """

    def __init__(
        self,
        data_dir: str,
        train_sets: Sequence[str | Mapping],
        val_sets: Sequence[str | Mapping] = (),
        test_sets: Sequence[str | Mapping] = (),
        scale: int = 3,
        scales: Sequence[int] | None = None,
        channels: int = 1,
        patch_size: int = 51,
        batch_size: int = 16,
        patches_per_image: int = 1,
        val_holdout: int = 0,
        augment: Mapping | None = None,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        skip_bad: bool = False,
        small_images: str = "skip",
        recursive: bool = False,
        random_crops: bool = True,
        name: str = "custom",
        cache: str = "auto",
        cache_dir: str | None = None,
        device_cache: str | bool = "auto",
        degradation: str = "auto",
        lr_model: Degradation | Mapping | str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.random_crops = random_crops
        self.data_dir = Path(data_dir)
        self.train_specs = list(train_sets)
        self.val_specs = list(val_sets)
        self.test_specs = list(test_sets)
        self.scale = int(scale)
        self.scales = [int(s) for s in scales] if scales else [self.scale]
        self.channels = channels
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.patches_per_image = patches_per_image
        self.val_holdout = val_holdout
        self.augment = dict(augment or {"hflip": True, "vflip": True, "rot90": True})
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.skip_bad = skip_bad
        self.small_images = small_images
        self.recursive = recursive
        self.cache = cache
        self.cache_dir = cache_dir
        self.device_cache = device_cache
        self.degradation = degradation
        self.paired = False  # decided by train_dataloader
        self.lr_model = Degradation.from_config(lr_model)
        self.check_patch_size()
        self.train_set: ImageSet | None = None
        self.device_fed = False  # decided by train_dataloader
        self._packed: PackedImages | None = None
        self._packed_images = None
        self.val_sets: list[ImageSet] = []
        self.test_sets: list[ImageSet] = []

    def check_patch_size(self) -> None:
        """Fail before any loading when the HR patch does not tile into whole LR pixels."""
        bad = [s for s in self.scales if self.patch_size % s]
        if bad:
            lcm = math.lcm(*self.scales)
            raise ValueError(
                f"data.patch_size={self.patch_size} is not a multiple of scale {bad}; "
                f"use a multiple of {lcm}, e.g. data.patch_size={lcm * max(1, round(self.patch_size / lcm))}."
            )

    def _set_options(self, evaluation: bool = False) -> dict:
        """How a training or evaluation set is read and cached (arguments of ``load_set``)."""
        return {
            "data_dir": self.data_dir,
            "channels": stored_channels(self.lr_model, self.channels, evaluation),
            "skip_bad": self.skip_bad,
            "recursive": self.recursive,
            "cache": self.cache,
            "cache_dir": self.cache_dir,
            "scale": self.scale,  # paired sets: pairing and size checks
        }

    def _load(self, specs: Sequence[str | Mapping], evaluation: bool = True) -> list[ImageSet]:
        return [load_set(spec, **self._set_options(evaluation)) for spec in specs]

    def prepare_data(self) -> None:
        """Build the disk caches once per node; Lightning runs this on local rank 0 only.

        A set that is missing here is left to ``setup``, which reports it when (and only
        when) the stage needs it: fitting must not fail on an absent test set.
        """
        specs = [(s, False) for s in self.train_specs]
        specs += [(s, True) for s in [*self.val_specs, *self.test_specs]]
        for spec, evaluation in specs:
            try:
                prepare_cache(spec, **self._set_options(evaluation))
            except FileNotFoundError as err:
                log.debug("not caching %s: %s", spec, err)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            if not self.train_specs:
                raise ValueError("data.train_sets is empty: name at least one training folder.")
            train = merge_sets("train", self._load(self.train_specs, evaluation=False))
            if check_given_lr(self.train_specs, self.data_dir, self.scales, self.degradation):
                self.device_cache = False  # aligned LR/HR crops of the given LR, on the host
            if self.val_holdout:
                as_read = self._set_options(True)["channels"] != self._set_options()["channels"]
                evaluated = merge_sets("holdout", self._load(self.train_specs)) if as_read else None
                holdout, train = split_holdout(train, self.val_holdout, evaluated)
                self.val_sets = [holdout]
            self.train_set = train
            self.val_sets = self.val_sets + self._load(self.val_specs)
            self.check_eval_images(self.val_sets, self.val_specs, "val")
            log.info(
                "train: %d images (%s); val: %s",
                len(train),
                train.images.storage,
                ", ".join(f"{s.name} ({len(s)})" for s in self.val_sets) or "none",
            )
        if stage in ("validate",) and not self.val_sets:
            self.val_sets = self._load(self.val_specs)
            self.check_eval_images(self.val_sets, self.val_specs, "val")
        if stage in (None, "test") and not self.test_sets:
            self.test_sets = self._load(self.test_specs)
            self.check_eval_images(self.test_sets, self.test_specs, "test")

    def check_eval_images(
        self, sets: Sequence[ImageSet], specs: Sequence[str | Mapping], split: str
    ) -> None:
        """Fail at set-up, naming the file, on an image too small to be scored at the scale.

        PSNR / SSIM crop ``scale`` pixels from each border of the modcropped image; an image
        with nothing left would otherwise fail in the middle of validation.
        """
        folders = {name: folder for name, folder, _ in (set_spec(s, self.data_dir) for s in specs)}
        for image_set in sets:
            for i, name in enumerate(image_set.names):
                h, w = image_set.images.shape(i)[-2:]
                if min(h - h % self.scale, w - w % self.scale) > 2 * self.scale:
                    continue
                folder = folders.get(image_set.name)
                path = next(folder.glob(f"{name}.*"), folder / name) if folder else name
                raise UserError(
                    f"{split} image {path} ({w}x{h}) is too small to evaluate at x{self.scale} "
                    f"(PSNR/SSIM crop {self.scale} pixels from each border). Remove it from "
                    f"its folder, or list the images to use in data.{split}_sets with "
                    "{name, dir, include: [...]}."
                )

    @property
    def val_set_names(self) -> list[str]:
        holdout = ["holdout"] if self.val_holdout else []
        return holdout + [self._spec_name(s) for s in self.val_specs]

    @property
    def test_set_names(self) -> list[str]:
        return [self._spec_name(s) for s in self.test_specs]

    def _spec_name(self, spec: str | Mapping) -> str:
        return set_spec(spec, self.data_dir)[0]

    # -- loaders -------------------------------------------------------------------------

    def train_dataloader(self) -> ResumableLoader:
        device = self._train_device()
        # the whole set's size decides (images too small for a patch are dropped below)
        images = self.train_set.images
        nbytes = packed_bytes([images.shape(i) for i in range(len(images))])
        self.device_fed = use_device_cache(
            self.device_cache, device, nbytes, free_device_bytes(device)
        )
        given = self.train_set.lr is not None
        self.paired = given or use_paired(
            self.degradation, device, self.scales, self.device_fed, self.lr_model.name
        )
        # device-fed, the loader hands out crop positions; host-fed, the crops themselves
        # (paired: aligned crops of the HR and of its precomputed or given LR)
        crops = (self.patch_size, self.patches_per_image, self.small_images, self.random_crops)
        if self.paired:
            dataset = PairedPatchDataset(
                self.train_set, self.patch_size, self.scale, *crops[1:], augment=self.augment
            )
        else:
            dataset = (CropPositions if self.device_fed else PatchDataset)(self.train_set, *crops)
        how = "given" if given else f"precomputed once per image (x{self.scale})"
        log.info(
            "training LR: %s",
            f"{how}, cropped with the HR" if self.paired else "downscaled from each HR batch",
        )
        if len(dataset) < self.batch_size:
            raise ValueError(
                f"{len(dataset)} training patches per epoch is fewer than data.batch_size="
                f"{self.batch_size}; raise data.patches_per_image."
            )
        if self.device_fed:
            log.info(
                "device cache: %d training images (%.1f MB) packed on %s; crops cut there",
                len(dataset.images),
                nbytes / 1e6,
                device,
            )
            self._packed = None  # packed on the first batch's device
            self._packed_images = dataset.images
            # positions are a few bytes a patch: workers and pinned memory would only add latency
            return resumable_loader(dataset, self.batch_size, collate_fn=_positions_as_is)
        # resumable: a run resumed mid-epoch continues with the crops it would have drawn
        return resumable_loader(
            dataset,
            self.batch_size,
            collate_fn=_positions_as_is if self.paired else None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and self._on_cuda(),
            persistent_workers=self.persistent_workers,
        )

    def _on_cuda(self) -> bool:
        """Pinned host memory only helps (and only works) when batches go to a CUDA device."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.strategy.root_device.type == "cuda"
        return torch.cuda.is_available()

    def _train_device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def packed_on(self, device: torch.device) -> PackedImages:
        """The device cache, packed on the first device-fed batch's device."""
        if self._packed is None or self._packed.device != device:
            images = self._packed_images
            if images is None:
                raise RuntimeError("crop positions arrived before train_dataloader() was built")
            self._packed = PackedImages(list(images), device)
        return self._packed

    def _eval_loaders(self, sets: Sequence[ImageSet]) -> list[DataLoader]:
        loaders = []
        for image_set in sets:
            dataset = EvalDataset(image_set, self.scale)
            sampler = None
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                sampler = UnpaddedDistributedSampler(
                    dataset, dist.get_world_size(), dist.get_rank()
                )
            loaders.append(
                DataLoader(dataset, batch_size=1, sampler=sampler, collate_fn=_collate_one)
            )
        return loaders

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.val_sets)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(self.test_sets)

    # -- device-side degradation ------------------------------------------------------------

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if is_crop_positions(batch):
            batch = self.packed_on(batch.device).crop(batch, self.patch_size)
        if isinstance(batch, torch.Tensor):
            return self.make_train_batch(batch)
        if "lr" in batch and "name" not in batch:  # a paired training batch
            return self.make_paired_batch(batch)
        return self.make_eval_batch(batch)

    def draw_scale(self) -> int:
        """One scale per batch for multi-scale training (VDSR); the scale otherwise."""
        if len(self.scales) == 1:
            return self.scales[0]
        return self.scales[int(torch.randint(len(self.scales), ()).item())]

    def make_paired_batch(self, batch: dict) -> dict:
        """Aligned uint8 LR/HR crops (already flipped/rotated by the dataset) -> float."""
        return {"lr": to_float(batch["lr"]), "hr": to_float(batch["hr"]), "scale": self.scale}


def _positions_as_is(positions):
    """CropPositions (and PairedPatchDataset) hand out whole batches already: no collation."""
    return positions


def _collate_one(items: list[dict]) -> dict:
    """Evaluation batches hold one whole image; keep its name and index as plain values."""
    (item,) = items
    batch = {"hr": item["hr"].unsqueeze(0), "index": item["index"], "name": item["name"]}
    if "lr" in item:  # a paired set's given LR
        batch["lr"] = item["lr"].unsqueeze(0)
    return batch
