"""Pixel-space reconstruction losses."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PixelKind = Literal["mse", "l1", "charbonnier"]

# How a per-pixel mean loss is rescaled: SRCNN's loss is the per-patch sum of squared errors
# and VDSR's half of it, the scales their learning rates, weight decay and θ were chosen for.
LOSS_REDUCTIONS = {"mean": None, "sum": 1.0, "half_sum": 0.5}


def check_loss_reduction(value: str) -> str:
    if value not in LOSS_REDUCTIONS:
        raise ValueError(
            f"model.loss_reduction must be one of {sorted(LOSS_REDUCTIONS)}, got {value!r}"
        )
    return value


def per_patch_scale(reduction: str, target: Tensor) -> float:
    """Factor turning a per-pixel mean loss into a per-patch (half) sum, averaged over the batch."""
    factor = LOSS_REDUCTIONS[reduction]
    return 1.0 if factor is None else factor * target[0].numel()


class PixelLoss(nn.Module):
    """Mean pixel loss between ``sr`` and ``hr``.

    ``mse`` is what SRCNN/ESPCN/VDSR/SRResNet optimise (it maximises PSNR);
    ``l1`` converges to sharper results in practice; ``charbonnier``
    (``sqrt(d² + eps²)``, a differentiable L1) is the robust variant of LapSRN.
    """

    def __init__(self, kind: PixelKind, eps: float = 1e-3) -> None:
        super().__init__()
        if kind not in ("mse", "l1", "charbonnier"):
            raise ValueError(f"unknown pixel loss {kind!r}; valid: 'mse', 'l1', 'charbonnier'")
        if eps <= 0:
            raise ValueError(f"charbonnier eps must be > 0, got {eps}")
        self.kind = kind
        self.eps = eps

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        if sr.shape != hr.shape:
            raise ValueError(f"sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
        if self.kind == "mse":
            return F.mse_loss(sr, hr)
        if self.kind == "l1":
            return F.l1_loss(sr, hr)
        return torch.sqrt((sr - hr).square() + self.eps**2).mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", eps={self.eps}" if self.kind == "charbonnier" else "")
