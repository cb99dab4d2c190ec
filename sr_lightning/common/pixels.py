"""8-bit rounding and the modcrop of the SR evaluation protocol.

The papers' LR and SR images are 8-bit files: training LR is rounded to 8-bit levels
(:mod:`sr_lightning.data.degradation`) and the SR output is rounded before it is scored
(:mod:`sr_lightning.core.metrics`), both with :func:`quantize`. Evaluation images are cut to a
multiple of the scale first (:func:`modcrop`, MATLAB ``modcrop`` of the SRCNN / VDSR code).
"""

from __future__ import annotations

import torch

__all__ = ["modcrop", "quantize"]


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the nearest 8-bit level (stays float).

    Ties round half up, like MATLAB's ``uint8()`` cast of the saved SR output.
    """
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0


def modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """``image`` (..., H, W) cut at the bottom and right to a multiple of ``scale`` (a view)."""
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]
