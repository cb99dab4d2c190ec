"""VDSR (Kim et al., CVPR'16): a 20-layer residual net on the bicubic-upsampled image.

Two pieces of training logic are the method's own:

* **Adjustable gradient clipping.** Every gradient element is clipped to [−θ/γ, θ/γ], γ being
  the *current* learning rate of its parameter group, so the bound widens as the step-decay
  schedule lowers γ and the largest parameter update stays about θ. θ is ``clip_theta``.
* **41×41 training inputs.** The paper trains on 41×41 patches of the interpolated image (the
  net's receptive field). Data patches must be whole multiples of every training scale (a
  41×41 patch is not a multiple of 2, 3 or 4), so the data module cuts an HR patch such as
  48 = 4·lcm(2, 3, 4), degrades it at the batch's scale, and this module upsamples the LR and
  takes the central ``train_crop``×``train_crop`` of input and target. The crop also drops
  the patch edges, where per-patch resampling had to invent pixels.

The loss is the paper's ½‖r − f(x)‖² per patch (``loss_reduction: half_sum``), the scale for
which its lr 0.1, weight decay 1e-4 and θ were chosen; hyperparameters are in
``conf/model/vdsr.yaml``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim import Optimizer

from sr_lightning.data.degradation import bicubic_upscale
from sr_lightning.modules.base import CHECKPOINT_KEY, SRModule


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    top = (x.shape[-2] - size) // 2
    left = (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


def clip_to_lr_bounds(optimizer: Optimizer, theta: float) -> None:
    """Clamp every gradient element to ±θ/γ, with γ the lr of the parameter's group."""
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        if lr <= 0:
            continue
        bound = theta / lr
        for p in group["params"]:
            if p.grad is not None:
                p.grad.clamp_(-bound, bound)


class VDSRModule(SRModule):
    """VDSR training: θ/γ gradient clipping and centre-cropped interpolated inputs."""

    method = "vdsr"

    def __init__(
        self,
        *,
        clip_theta: float | None = None,
        train_crop: int | None = None,
        loss_reduction: str = "half_sum",
        scales: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(loss_reduction=loss_reduction, **kwargs)
        if clip_theta is not None and clip_theta <= 0:
            raise ValueError(f"model.clip_theta must be > 0 or null, got {clip_theta}")
        if train_crop is not None and train_crop < 1:
            raise ValueError(f"model.train_crop must be >= 1 or null, got {train_crop}")
        self.clip_theta = clip_theta
        self.train_crop = train_crop
        # the scales this model was trained for (multi-scale: data.scales), for evaluation tools
        self.scales = sorted({int(s) for s in scales}) if scales else [self.scale]

    # -- training ---------------------------------------------------------------------------

    def training_pair(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR, HR) of a training batch, on the central ``train_crop`` of the interpolated patch."""
        if not self.train_crop:
            return self(batch["lr"], batch["scale"]), batch["hr"]
        hr = batch["hr"]
        if min(hr.shape[-2:]) < self.train_crop:
            raise ValueError(
                f"model.train_crop={self.train_crop} is larger than the training patch "
                f"{hr.shape[-2]}x{hr.shape[-1]}; raise the training patch (model.patch_hr) "
                "or lower model.train_crop."
            )
        x = center_crop(bicubic_upscale(batch["lr"], batch["scale"]), self.train_crop)
        return self._net_forward(x), center_crop(hr, self.train_crop)

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """θ/γ clipping first; a Trainer ``gradient_clip_val`` still applies on top of it."""
        if self.clip_theta:
            clip_to_lr_bounds(optimizer, self.clip_theta)
        if gradient_clip_val:
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Also record every training scale: one multi-scale VDSR serves ×2, ×3 and ×4."""
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["scales"] = list(self.scales)
