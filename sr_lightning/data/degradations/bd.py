"""BD: RDN's blur-downscale protocol (Zhang et al., CVPR'18; ``Prepare_TestData_HR_LR.m``).

From the modcropped uint8 RGB HR: correlate with a MATLAB ``fspecial('gaussian', n, 1.6)``
kernel (``imfilter`` with 'replicate' borders), round to uint8, and keep every scale-th pixel
as the authors' code picks them. The kernel is 7x7 at x3, as RDN's; at other scales
``n = 2 ceil(3 sigma) + 1`` taps for odd scales and ``2 ceil(3 sigma) + 2`` for even ones.

Only the kept pixels are filtered (a strided convolution), in float64 on the batch's device,
so the rounding matches MATLAB's double arithmetic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sr_lightning.common.pixels import modcrop

__all__ = ["bd_downscale", "bd_kernel", "bd_offset", "bd_taps"]

SIGMA = 1.6


def bd_taps(scale: int, sigma: float = SIGMA) -> int:
    """The kernel side: 7 at x3 (RDN's), else 2 ceil(3 sigma) + 1 (odd) or + 2 (even scales)."""
    if scale == 3 and sigma == SIGMA:
        return 7
    return 2 * math.ceil(3 * sigma) + (1 if scale % 2 else 2)


def bd_kernel(taps: int, sigma: float = SIGMA) -> torch.Tensor:
    """MATLAB ``fspecial('gaussian', taps, sigma)`` in float64: (taps, taps), summing to 1."""
    half = (taps - 1) / 2
    t = torch.arange(taps, dtype=torch.float64) - half
    h = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma * sigma))
    h = torch.where(h < torch.finfo(torch.float64).eps * h.max(), 0.0, h)
    return h / h.sum()


def bd_offset(scale: int) -> int:
    """0-based index of the first kept pixel: (s-1)/2 for odd s (MATLAB's nearest
    ``imresize(., 1/s)``), s/2 - 1 for even s (the code's ``s/2:s:end-s/2``)."""
    return (scale - 1) // 2 if scale % 2 else scale // 2 - 1


def bd_downscale(hr: torch.Tensor, scale: int, sigma: float = SIGMA) -> torch.Tensor:
    """The BD LR of an HR image or batch (..., C, H, W).

    ``hr`` is uint8, or float in [0, 1] on 8-bit levels; it is modcropped first. The LR has
    the same dtype: uint8, or float on 8-bit levels.
    """
    is_uint8 = hr.dtype == torch.uint8
    hr = modcrop(hr, scale)
    *lead, h, w = hr.shape
    x = hr.reshape(-1, 1, h, w).to(torch.float64)
    if not is_uint8:
        x = torch.round(x * 255.0)
    taps = bd_taps(scale, sigma)
    before = (taps - 1) // 2  # MATLAB imfilter's centre: floor((taps + 1) / 2), 1-based
    x = F.pad(x, (before, taps - 1 - before, before, taps - 1 - before), mode="replicate")
    o = bd_offset(scale)
    kernel = bd_kernel(taps, sigma).to(x.device)[None, None]
    lr = F.conv2d(x[..., o:, o:], kernel, stride=scale)
    # imfilter on uint8: round half away from zero, saturate
    lr = torch.floor(lr + 0.5).clamp_(0, 255)
    lr = lr.reshape(*lead, h // scale, w // scale)
    return lr.to(torch.uint8) if is_uint8 else (lr / 255.0).to(hr.dtype)
