"""Paired LR/HR training crops: the LR of every training image computed once, then cropped.

The papers make their training LR from whole images (MATLAB ``imresize`` of the modcropped
image, saved as 8-bit PNG) and cut aligned LR/HR sub-images from the pair. This module does
the same: ``lr_images`` downscales each training image once per (set, scale), with the MATLAB
bicubic and 8-bit rounding, and :class:`PairedPatchDataset` cuts aligned crops (LR crop at
``(top, left)``, HR crop at ``scale * (top, left)``). It is also what a user-given LR folder
would feed.

Crop-of-LR differs from LR-of-crop (the on-the-fly degradation, ``data.degradation=online``)
only near a patch's border: the bicubic kernel spans 4·scale HR pixels, so the outer ~2 LR
pixels of an on-the-fly LR patch see mirrored HR pixels instead of the image's real
neighbours. Crop-of-LR is what a net meets at test time (the LR of a whole image).

A paired training set (``{name, hr, lr}`` in ``data.train_sets``) gives its own LR images,
which :class:`PairedPatchDataset` crops as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sr_lightning.common.errors import UserError
from sr_lightning.common.pixels import modcrop
from sr_lightning.data.datasets import ImageList, PatchDataset, paired_dirs
from sr_lightning.data.imresize import imresize

DEGRADATIONS = ("auto", "paired", "online")


def use_paired(
    mode: str,
    device: torch.device,
    scales: Sequence[int],
    device_fed: bool,
    lr_model: str = "bicubic",
) -> bool:
    """Whether a run crops a precomputed LR (``paired``) or degrades each batch (``online``).

    ``auto`` pairs on a CPU (the degradation would cost ~5 % of an ESPCN step there) and stays
    online on an accelerator, where the batched degradation is nearly free, and for
    multi-scale training (one scale drawn per batch). The precomputed LR is bicubic: another
    ``lr_model`` (``degradation=bd|dn|realesrgan``) is always online.
    """
    if mode not in DEGRADATIONS:
        raise ValueError(f"data.degradation must be one of {', '.join(DEGRADATIONS)}; got {mode!r}")
    if lr_model != "bicubic":
        if mode == "paired":
            raise ValueError(
                f"data.degradation=paired precomputes bicubic LR; degradation={lr_model} "
                "needs data.degradation=online (or auto)."
            )
        return False
    if mode == "paired":
        if len(scales) > 1:
            raise ValueError(
                f"data.degradation=paired needs one scale, got scales={list(scales)}; "
                "use data.degradation=online (or auto) for multi-scale training."
            )
        if device_fed:
            raise ValueError(
                "data.degradation=paired crops on the host; set data.device_cache=false "
                "or data.degradation=online."
            )
        return True
    return mode == "auto" and device.type == "cpu" and len(scales) == 1 and not device_fed


def check_given_lr(specs: Sequence, data_dir, scales: Sequence[int], mode: str) -> bool:
    """Whether ``data.train_sets`` are paired sets (``{name, hr, lr}``), whose given LR the
    run crops as is: then all of them are, at one scale, with ``data.degradation`` auto or
    paired (the crops are cut on the host; ``degradation=`` does not apply)."""
    paired = [paired_dirs(s, data_dir) is not None for s in specs]
    if not any(paired):
        return False
    if not all(paired):
        raise UserError(
            "data.train_sets mixes paired sets ({name, hr, lr}) with HR-only ones; "
            "list only paired sets, or only HR folders (their LR from degradation=)."
        )
    if len(scales) > 1:
        raise UserError(f"paired training sets hold one scale; got scales={list(scales)}")
    if mode == "online":
        raise UserError(
            "paired training sets crop their given LR: use data.degradation=auto or paired"
        )
    return True


def downscale_uint8(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 LR of its modcrop: MATLAB bicubic, rounded to 8 bits."""
    hr = modcrop(hr, scale)
    lr = imresize(hr.float().div(255.0).unsqueeze(0), 1.0 / scale)[0]
    # half up, like MATLAB's uint8() (and sr_lightning.common.pixels.quantize)
    return torch.floor(lr.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


def lr_images(images: ImageList, scale: int) -> list[torch.Tensor]:
    """The uint8 LR of every image (held in RAM: 1/scale² of the HR set's bytes)."""
    return [downscale_uint8(images[i], scale) for i in range(len(images))]


def flip_generator(indices: Sequence) -> torch.Generator | None:
    """For a resumable loader's ``(index, key)`` batch, a generator of its own seeded by the
    key (mixed apart from the positions' stream), so a resumed run flips the same way; torch's
    global RNG for plain indices."""
    if not indices or not isinstance(indices[0], tuple | list):
        return None
    seed = np.random.SeedSequence([int(indices[0][1]) & (2**63 - 1), 1]).generate_state(1)
    return torch.Generator().manual_seed(int(seed[0]))


class PairedPatchDataset(PatchDataset):
    """Aligned ``{"lr", "hr"}`` uint8 crops with their flips/rotations, a batch per call.

        Crop positions are :class:`PatchDataset`'s (same RNG calls), snapped down to the LR grid:
        HR position ``t`` becomes LR ``t // scale`` and HR ``scale * (t // scale)``, which keeps
        every crop inside the modcropped image. The random dihedral transform of each pair (one
        ``torch.rand`` call per batch) is applied here, as strided numpy views copied once by the
        stack: a tenth of the cost of masked selects over the float batch. Under the resumable loader
    (``(index, key)`` indices) both positions and flips are functions of the batch's key.
    """

    def __init__(
        self, images, patch_size: int, scale: int, *args, augment: dict | None = None, **kwargs
    ) -> None:
        super().__init__(images, patch_size, *args, **kwargs)
        self.scale = scale
        # a paired set's LR as given (``images.lr``), else the bicubic of each image
        given = getattr(images, "lr", None)
        lrs = [given[i] for i in self.kept] if given is not None else lr_images(self.images, scale)
        self.lr = [x.numpy() for x in lrs]
        augment = {"hflip": True, "vflip": True, "rot90": True, **(augment or {})}
        self.flags = torch.tensor([augment["hflip"], augment["vflip"], augment["rot90"]])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        s, p = self.scale, self.patch_size
        q = p // s
        positions = self.crop_positions(indices).tolist()
        draws = torch.rand(len(indices), 3, generator=flip_generator(indices))
        flips = ((draws < 0.5) & self.flags).tolist()
        lrs, hrs = [], []
        for (index, top, left), (h, v, t) in zip(positions, flips, strict=True):
            y, x = top // s, left // s
            pair = (
                self.lr[index][:, y : y + q, x : x + q],
                self.images[index].numpy()[:, y * s : y * s + p, x * s : x * s + p],
            )
            for crops, crop in zip((lrs, hrs), pair, strict=True):
                crop = crop[..., ::-1] if h else crop
                crop = crop[..., ::-1, :] if v else crop
                crops.append(crop.swapaxes(-1, -2) if t else crop)
        return {"lr": torch.from_numpy(np.stack(lrs)), "hr": torch.from_numpy(np.stack(hrs))}
