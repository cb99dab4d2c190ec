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
        super().__init__(loss_reduction=loss_reduction, **kwargs)
        self.border = valid_border(self.net) if valid_loss else 0

    def loss_region(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The centre whose outputs never saw padding (the papers' valid-convolution labels)."""
        b = self.border
        if b:
            if min(hr.shape[-2:]) <= 2 * b:
                raise ValueError(
                    f"training patch {hr.shape[-2]}x{hr.shape[-1]} has no pixel outside the "
                    f"{b}-pixel border that valid_loss drops; raise the training patch (model.patch_hr) above {2 * b} "
                    "or set model.valid_loss=false."
                )
            sr, hr = sr[..., b:-b, b:-b], hr[..., b:-b, b:-b]
        return sr, hr
