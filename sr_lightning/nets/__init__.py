"""Plain ``nn.Module`` nets, built from config by Hydra ``_target_``; no Lightning here.

Generators carry ``upsampling`` ("pre": takes the bicubic-upsampled image and keeps its size;
"post": takes the LR image and upsamples itself) and ``scale`` (None for "pre" nets).
"""

from torch import nn

from sr_lightning.nets.discriminator import Discriminator
from sr_lightning.nets.espcn import ESPCN
from sr_lightning.nets.srcnn import SRCNN
from sr_lightning.nets.srresnet import SRResNet
from sr_lightning.nets.vdsr import VDSR

__all__ = ["ESPCN", "SRCNN", "VDSR", "Discriminator", "SRResNet", "count_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
