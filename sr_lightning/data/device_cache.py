"""The training set on the accelerator: crops cut there, so no worker stands between the data and
the GPU.

With ``data.device_cache`` the decoded uint8 training images are packed once into one flat
buffer on the training device. The DataLoader then hands out only crop positions
(:class:`~sr_lightning.data.datasets.CropPositions`, 24 bytes a patch) and every batch is one
gather from that buffer, followed by the usual on-device augmentation and degradation. Host
decoding, slicing, collation, pinning and the host-to-device copy of pixels all leave the
training loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

DEVICE_CACHE_MODES = ("auto", "true", "false")
# `auto` packs the set when it takes at most this share of the device's free memory, so the
# model, activations and optimizer keep the rest (DIV2K train, about 6 GB RGB, fits an 80 GB GPU).
AUTO_DEVICE_FRACTION = 0.25


def packed_bytes(shapes: Sequence[Sequence[int]]) -> int:
    """Bytes of the packed uint8 buffer for images of these (C, H, W) shapes."""
    return sum(math.prod(int(d) for d in shape) for shape in shapes)


def free_device_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA device; None where torch cannot tell (CPU, MPS)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def use_device_cache(
    mode: str | bool, device: torch.device, nbytes: int, free_bytes: int | None
) -> bool:
    """Whether to pack the training set on ``device`` under ``data.device_cache=mode``.

    ``auto`` packs on a CUDA device when the set takes at most ``AUTO_DEVICE_FRACTION`` of its
    free memory, and never on the CPU (there host workers overlap with the step instead).
    ``true`` always packs, and fails clearly where the set cannot fit.
    """
    mode = str(mode).lower()
    if mode not in DEVICE_CACHE_MODES:
        raise ValueError(
            f"data.device_cache must be one of {', '.join(DEVICE_CACHE_MODES)}; got {mode!r}"
        )
    if mode == "false":
        return False
    if mode == "auto":
        return (
            device.type == "cuda"
            and free_bytes is not None
            and (nbytes <= AUTO_DEVICE_FRACTION * free_bytes)
        )
    if free_bytes is not None and nbytes > free_bytes:
        raise ValueError(
            f"data.device_cache=true: the training set needs {nbytes / 2**30:.2f} GiB on "
            f"{device} but only {free_bytes / 2**30:.2f} GiB is free; set data.device_cache=false "
            "(host workers feed the batches) or train on fewer images."
        )
    return True


class PackedImages:
    """uint8 images of one channel count, packed end to end in one flat tensor on a device."""

    def __init__(self, images: Sequence[torch.Tensor], device: torch.device | str) -> None:
        channels = {int(image.shape[0]) for image in images}
        if len(channels) != 1:
            raise ValueError(f"packed images must share one channel count, got {channels}")
        (self.channels,) = channels
        device = torch.device(device)
        sizes = [image.numel() for image in images]
        self.flat = torch.empty(sum(sizes), dtype=torch.uint8, device=device)
        offset = 0
        for image, size in zip(images, sizes, strict=True):
            # image by image, so a memory-mapped set never needs a second host copy
            self.flat[offset : offset + size].copy_(image.reshape(-1))
            offset += size
        starts = torch.tensor([0, *sizes[:-1]], dtype=torch.int64).cumsum(0)
        hw = torch.tensor([tuple(image.shape[-2:]) for image in images], dtype=torch.int64)
        self.starts = starts.to(device)
        self.heights = hw[:, 0].to(device)
        self.widths = hw[:, 1].to(device)
        self.device = device

    @property
    def nbytes(self) -> int:
        return self.flat.numel()

    def crop(self, positions: torch.Tensor, size: int) -> torch.Tensor:
        """(B, C, size, size) uint8 crops at ``positions`` rows ``(image, top, left)``.

        One index tensor addresses every pixel of the batch, so a batch is a single gather
        whatever the image sizes.
        """
        positions = positions.to(self.device, torch.int64)
        image, top, left = positions.unbind(1)
        width = self.widths[image].view(-1, 1, 1, 1)
        plane = (self.heights[image] * self.widths[image]).view(-1, 1, 1, 1)
        steps = torch.arange(size, device=self.device)
        channel = torch.arange(self.channels, device=self.device).view(1, -1, 1, 1)
        rows = (top.view(-1, 1) + steps).view(-1, 1, size, 1)
        cols = (left.view(-1, 1) + steps).view(-1, 1, 1, size)
        index = self.starts[image].view(-1, 1, 1, 1) + channel * plane + rows * width + cols
        return self.flat[index]


def is_crop_positions(batch: object) -> bool:
    """A device-fed training batch: int64 rows ``(image, top, left)``, not pixels."""
    return (
        isinstance(batch, torch.Tensor)
        and batch.dtype == torch.int64
        and batch.dim() == 2
        and batch.shape[1] == 3
    )
