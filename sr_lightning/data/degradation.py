"""Batched, on-device degradation and augmentation of uint8 HR batches.

The papers' LR images are MATLAB bicubic downscales saved as 8-bit PNGs, so training LR is
rounded to 8-bit levels. Evaluation LR follows the SRCNN/VDSR evaluation code instead: the
float imresize of the uint8 HR, left unrounded.
"""

from __future__ import annotations

import torch

from sr_lightning.common.pixels import quantize
from sr_lightning.data.imresize import imresize


def to_float(hr: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return hr.float().div_(255.0)


def random_dihedral(
    x: torch.Tensor, hflip: bool = True, vflip: bool = True, rot90: bool = True
) -> torch.Tensor:
    """Per-sample random flips and 90-degree rotations (the 8 dihedral transforms) of a batch.

    Each transform is a masked select over the whole batch, so the cost is a few tensor ops,
    not a Python loop over samples.
    """
    n = x.shape[0]

    def mask() -> torch.Tensor:
        return (torch.rand(n, device=x.device) < 0.5).view(n, 1, 1, 1)

    if hflip:
        x = torch.where(mask(), x.flip(-1), x)
    if vflip:
        x = torch.where(mask(), x.flip(-2), x)
    if rot90 and x.shape[-1] == x.shape[-2]:
        x = torch.where(mask(), x.transpose(-1, -2), x)
    return x


def degrade_train(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Training LR: bicubic downscale, rounded to 8-bit levels like the papers' LR PNGs."""
    return quantize(imresize(hr, 1.0 / scale))


def degrade_eval(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Evaluation LR: the float bicubic downscale of the uint8 HR, unrounded (SRCNN/VDSR code)."""
    return imresize(hr, 1.0 / scale)


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline and the input of pre-upsampling nets."""
    return imresize(lr, float(scale))
