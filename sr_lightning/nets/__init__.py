"""Plain ``nn.Module`` nets, built from config by Hydra ``_target_``; no Lightning here.

Every generator class declares ``upsampling``: "pre" (takes the bicubic-upsampled image and
keeps its size) or "post" (takes the LR image and upsamples itself). Training, export and
tiled inference read it through :func:`upsampling_kind`; nothing guesses it from a name.

Layer: beside :mod:`sr_lightning.losses` and :mod:`sr_lightning.data`; torch only (and spandrel
for the released-model zoo), no Lightning, Hydra or W&B (``make lint`` checks it).
"""

from torch import nn

from sr_lightning.nets.bicubic import BicubicNet
from sr_lightning.nets.discriminator import Discriminator
from sr_lightning.nets.espcn import ESPCN
from sr_lightning.nets.srcnn import SRCNN
from sr_lightning.nets.srresnet import SRResNet
from sr_lightning.nets.vdsr import VDSR

__all__ = [
    "ESPCN",
    "SRCNN",
    "UPSAMPLING_KINDS",
    "VDSR",
    "BicubicNet",
    "Discriminator",
    "SRResNet",
    "count_parameters",
    "upsampling_kind",
]

UPSAMPLING_KINDS = ("pre", "post")


def upsampling_kind(net: nn.Module | type) -> str:
    """The ``upsampling`` a generator (instance or class) declares; an error if it declares none."""
    kind = getattr(net, "upsampling", None)
    if kind not in UPSAMPLING_KINDS:
        name = net.__name__ if isinstance(net, type) else type(net).__name__
        raise ValueError(
            f"net {name} declares upsampling={kind!r}: give the class an attribute "
            '`upsampling = "pre"` (its input is the bicubic-upsampled image, same size out) or '
            '`upsampling = "post"` (its input is the LR image; it upsamples by `scale` itself)'
        )
    return kind


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
