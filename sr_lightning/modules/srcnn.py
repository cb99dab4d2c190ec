"""SRCNN (Dong et al., ECCV'14 / TPAMI'16): bicubic-upsampled input, three convolutions, MSE.

The papers train on 33×33 sub-images with unpadded ("valid") convolutions: the loss sees only
the central (33 − Σ(k − 1))² pixels (17×17 for 9-5-5, 21×21 for 9-1-5), and it is the
per-patch *sum* of squared errors (TPAMI eq. 4), the scale their learning rates belong to.
Our net pads every conv so that a whole image maps to a whole image. ``valid_loss`` crops
output and target to that same central region, whose pixels never see any padding, so the
training signal is exactly the papers'; ``loss_reduction: sum`` restores their loss scale.
The optimizer (SGD with momentum, last layer at lr ×0.1) is configuration:
``conf/model/srcnn.yaml``.
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lightning.modules.base import SRModule

LOSS_REDUCTIONS = {"mean": None, "sum": 1.0, "half_sum": 0.5}


def check_loss_reduction(value: str) -> str:
    if value not in LOSS_REDUCTIONS:
        raise ValueError(
            f"model.loss_reduction must be one of {sorted(LOSS_REDUCTIONS)}, got {value!r}"
        )
    return value


def per_patch_scale(reduction: str, target: torch.Tensor) -> float:
    """Factor turning a per-pixel mean loss into a per-patch (half) sum, averaged over the batch."""
    factor = LOSS_REDUCTIONS[reduction]
    return 1.0 if factor is None else factor * target[0].numel()


def valid_border(net: nn.Module) -> int:
    """Pixels per side whose outputs depend on padding: Σ (k − 1)·dilation / 2 over the convs."""
    border = 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            if m.stride != (1, 1):
                raise ValueError("valid_loss needs stride-1 convolutions")
            border += (m.kernel_size[0] - 1) * m.dilation[0] // 2
    return border


class SRCNNModule(SRModule):
    """SRCNN training: the papers' loss on the padding-free centre of each patch."""

    method = "srcnn"

    def __init__(self, *, valid_loss: bool = True, loss_reduction: str = "sum", **kwargs) -> None:
        super().__init__(**kwargs)
        self.loss_reduction = check_loss_reduction(loss_reduction)
        self.border = valid_border(self.net) if valid_loss else 0

    def compute_loss(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict]:
        b = self.border
        if b:
            if min(hr.shape[-2:]) <= 2 * b:
                raise ValueError(
                    f"training patch {hr.shape[-2]}x{hr.shape[-1]} has no pixel outside the "
                    f"{b}-pixel border that valid_loss drops; raise data.patch_size above {2 * b} "
                    "or set model.valid_loss=false."
                )
            sr, hr = sr[..., b:-b, b:-b], hr[..., b:-b, b:-b]
        total, terms = super().compute_loss(sr, hr)
        k = per_patch_scale(self.loss_reduction, hr)
        return total * k, {name: value * k for name, value in terms.items()}
