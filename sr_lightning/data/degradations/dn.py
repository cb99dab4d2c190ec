"""DN: RDN's bicubic-plus-noise protocol (Zhang et al., CVPR'18).

The MATLAB bicubic downscale of the modcropped uint8 HR, rounded to uint8 (``imresize`` on a
uint8 image), plus ``sigma * N(0, 1)`` noise on the [0, 255] scale, rounded and saturated to
uint8 (what ``imwrite`` keeps). Each sample's noise comes from its own seed
(:mod:`~sr_lightning.data.degradations.seeding`): training passes fresh seeds per batch,
evaluation seeds fixed by the image, so a set's LR is the same in every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sr_lightning.common.pixels import modcrop, quantize
from sr_lightning.data.degradations.seeding import generator
from sr_lightning.data.imresize import imresize

__all__ = ["SIGMA", "dn_degrade", "gaussian_noise"]

SIGMA = 30.0


def gaussian_noise(shape: Sequence[int], seeds: Sequence[int], device) -> torch.Tensor:
    """Standard normal noise (len(seeds), *shape), float32: sample i from seed i, on the CPU."""
    noise = [torch.randn(tuple(shape), generator=generator(s)) for s in seeds]
    return torch.stack(noise).to(device)


def dn_degrade(
    hr: torch.Tensor, scale: int, seeds: Sequence[int], sigma: float = SIGMA
) -> torch.Tensor:
    """The DN LR of an HR batch (N, C, H, W): uint8, or float in [0, 1] on 8-bit levels.

    ``seeds`` has one seed per sample. The LR has the input's dtype (float: on 8-bit levels).
    """
    if hr.dim() != 4 or len(seeds) != hr.shape[0]:
        raise ValueError(f"dn_degrade: expected (N, C, H, W) and N seeds, got {tuple(hr.shape)}")
    is_uint8 = hr.dtype == torch.uint8
    hr = modcrop(hr, scale)
    x = hr.float() / 255.0 if is_uint8 else hr.float()
    lr = quantize(imresize(x, 1.0 / scale)) * 255.0
    noise = gaussian_noise(lr.shape[1:], seeds, lr.device)
    lr = torch.floor(lr + sigma * noise + 0.5).clamp_(0, 255)
    return lr.to(torch.uint8) if is_uint8 else (lr / 255.0).to(hr.dtype)
