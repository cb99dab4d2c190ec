"""Pixel-space reconstruction losses."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PixelKind = Literal["mse", "l1", "charbonnier"]


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
