"""Losses: pixel (MSE / L1 / Charbonnier), VGG19 content, adversarial.

The content loss (and torchvision with it) is imported lazily, so that methods
trained with pixel losses only never pay for it.

Layer: beside :mod:`sr_lightning.nets` and :mod:`sr_lightning.data`; the content loss gets its
VGG19 weights from :mod:`sr_lightning.common.pretrained` (``make lint`` checks the layers).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sr_lightning.losses.adversarial import AdversarialLoss
from sr_lightning.losses.pixel import PixelLoss

if TYPE_CHECKING:
    from sr_lightning.losses.content import (
        VGG19_LAYERS,
        VGGContentLoss,
        VGGWeightsUnavailableError,
        load_vgg19_state_dict,
        vgg19_cache_path,
    )

_CONTENT = (
    "VGG19_LAYERS",
    "VGGContentLoss",
    "VGGWeightsUnavailableError",
    "load_vgg19_state_dict",
    "vgg19_cache_path",
)

__all__ = [
    "VGG19_LAYERS",
    "AdversarialLoss",
    "PixelLoss",
    "VGGContentLoss",
    "VGGWeightsUnavailableError",
    "load_vgg19_state_dict",
    "vgg19_cache_path",
]


def __getattr__(name: str) -> Any:
    if name in _CONTENT:
        return getattr(import_module("sr_lightning.losses.content"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
