"""MATLAB's colour conversions, as the SR papers' code uses them.

``rgb2ycbcr`` / ``ycbcr2rgb`` (ITU-R BT.601, studio range) on float RGB in [0, 1], and the luma
of a uint8 image computed like MATLAB's ``rgb2ycbcr`` on uint8 input. The training and
evaluation HR luma (:mod:`sr_lightning.data.datasets`), the Y-channel metrics
(:mod:`sr_lightning.core.metrics`) and luma models' colour output
(:mod:`sr_lightning.core.inference`) all use these, so the formula lives once.
"""

from __future__ import annotations

import torch

__all__ = ["rgb_to_y", "rgb_to_ycbcr", "to_luma_uint8", "ycbcr_to_rgb"]

# MATLAB rgb2ycbcr luma row for RGB in [0, 1], giving Y in [16, 235] on the 8-bit scale.
_Y_OFFSET = 16.0
_Y_COEFFS = (65.481, 128.553, 24.966)

# MATLAB rgb2ycbcr for RGB in [0, 1]: ycbcr·255 = offset + M · rgb.
_YCBCR_MATRIX = torch.tensor(
    [
        _Y_COEFFS,
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=torch.float64,
)
_YCBCR_OFFSET = torch.tensor([_Y_OFFSET, 128.0, 128.0], dtype=torch.float64)


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Luma of float RGB in [0, 1], shaped (..., 3, H, W) -> (..., 1, H, W) in [0, 1].

    MATLAB ``rgb2ycbcr`` on double input, unrounded (the BasicSR / paper convention
    for evaluating 8-bit RGB outputs).
    """
    if x.shape[-3:-2] != (3,):
        raise ValueError(f"rgb_to_y: expected (..., 3, H, W), got {tuple(x.shape)}")
    r, g, b = x.unbind(dim=-3)
    y = _Y_OFFSET + _Y_COEFFS[0] * r + _Y_COEFFS[1] * g + _Y_COEFFS[2] * b
    return (y / 255.0).unsqueeze(-3)


def to_luma_uint8(img: torch.Tensor) -> torch.Tensor:
    """Luma of a uint8 image (..., C, H, W) as uint8 (..., 1, H, W).

    C == 1 is returned as is (grey images such as Set14's bridge.png are their own
    luma); C == 3 is MATLAB ``rgb2ycbcr`` on uint8, whose Y is rounded half away
    from zero back to uint8. This is how training and evaluation HR luma is made.
    """
    if img.dtype != torch.uint8:
        raise TypeError(f"to_luma_uint8: expected a uint8 image, got {img.dtype}")
    if img.dim() < 3 or img.shape[-3] not in (1, 3):
        raise ValueError(f"to_luma_uint8: expected (..., 1 or 3, H, W), got {tuple(img.shape)}")
    if img.shape[-3] == 1:
        return img
    # Exact integer arithmetic: Y = 16 + (65481 R + 128553 G + 24966 B) / 255000,
    # rounded half up (MATLAB's round; exact ties occur about once per million pixels).
    r, g, b = img.to(torch.int32).unbind(dim=-3)
    num = 65481 * r + 128553 * g + 24966 * b + 16 * 255000 + 127500
    return (
        torch.div(num, 255000, rounding_mode="floor").clamp_(0, 255).to(torch.uint8).unsqueeze(-3)
    )


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """MATLAB ``rgb2ycbcr`` on float RGB in [0, 1], (..., 3, H, W) -> YCbCr in [0, 1], unrounded."""
    m = (_YCBCR_MATRIX / 255.0).to(rgb)
    offset = (_YCBCR_OFFSET / 255.0).to(rgb)
    return torch.einsum("ij,...jhw->...ihw", m, rgb) + offset[:, None, None]


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """MATLAB ``ycbcr2rgb`` on float YCbCr in [0, 1]: the exact inverse of ``rgb_to_ycbcr``."""
    m_inv = torch.linalg.inv(_YCBCR_MATRIX / 255.0).to(ycc)
    offset = (_YCBCR_OFFSET / 255.0).to(ycc)
    return torch.einsum("ij,...jhw->...ihw", m_inv, ycc - offset[:, None, None])
