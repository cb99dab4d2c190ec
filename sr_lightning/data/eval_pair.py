"""The evaluation LR/HR pair of the papers' protocol, for validation and ``sr-eval`` alike.

The SRCNN / VDSR evaluation code cuts the HR image to a multiple of the scale (``modcrop``),
puts it in the model's colour space (uint8 MATLAB luma, or RGB), and scores the model on the
float bicubic downscale of that uint8 HR, left unrounded. :func:`eval_pair` is that recipe;
the data module's evaluation batches (``SRDataModule.make_eval_batch``) and ``sr-eval``'s
loop both take their images from it, so a checkpoint scores the same in both.

With another ``degradation`` (``degradation=bd|dn|realesrgan``, :mod:`sr_lightning.data.degradations`)
the LR is that model's uint8 LR of the image as given (RGB for BD / DN / Real-ESRGAN), put in
the model's colour space afterwards: a luma model takes the Y of the degraded RGB. A paired
set (``{name, hr, lr}``) gives its LR as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sr_lightning.common.pixels import modcrop
from sr_lightning.data.datasets import convert_channels
from sr_lightning.data.degradation import degrade_eval, to_float
from sr_lightning.data.degradations.model import Degradation

__all__ = ["eval_pair"]


def eval_pair(
    image: torch.Tensor,
    scale: int,
    channels: int | None = None,
    degradation: Degradation | None = None,
    names: Sequence[str] = (),
    lr: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hr, lr)`` of a uint8 HR image or batch (..., C, H, W), float in [0, 1].

    ``hr`` is the image cut at the bottom and right to a multiple of ``scale`` and, with
    ``channels`` (1: MATLAB luma, a grey image being its own; 3: RGB), put in that colour
    space (``None``: it is already); ``lr`` is its MATLAB bicubic downscale by ``scale``,
    unrounded. Runs on the image's device.

    ``degradation`` (default bicubic) other than bicubic degrades ``image`` before the colour
    conversion; ``names`` (one per image of the batch) seed its random ones.

    ``lr``: a paired set's given uint8 LR, used as it is (no degradation); its sides times
    ``scale`` must be the modcropped HR's.
    """
    if image.dtype != torch.uint8:
        raise TypeError(f"eval_pair: expected a uint8 image, got {image.dtype}")
    image = modcrop(image, scale)
    if lr is not None:
        if tuple(lr.shape[-2:]) != tuple(d // scale for d in image.shape[-2:]):
            raise ValueError(
                f"the LR image is {lr.shape[-1]}x{lr.shape[-2]}; x{scale} it must be the HR's "
                f"{image.shape[-1]}x{image.shape[-2]}"
            )
        if channels is not None:
            image, lr = convert_channels(image, channels), convert_channels(lr, channels)
        return to_float(image), to_float(lr)
    if degradation is not None and degradation.name != "bicubic":
        batch = image if image.dim() == 4 else image.unsqueeze(0)
        lr = degradation.eval_lr(batch, scale, list(names) or [""] * batch.shape[0])
        lr = lr if image.dim() == 4 else lr[0]
        if channels is not None:
            image, lr = convert_channels(image, channels), convert_channels(lr, channels)
        return to_float(image), to_float(lr)
    if channels is not None:
        image = convert_channels(image, channels)
    hr = to_float(image)
    return hr, degrade_eval(hr, scale)
