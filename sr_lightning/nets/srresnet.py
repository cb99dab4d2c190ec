"""SRResNet (Ledig et al., CVPR 2017): the SRGAN generator, also trained alone with MSE.

A 9×9 head, ``num_blocks`` residual blocks (conv-BN-PReLU-conv-BN + identity), a conv-BN
whose output is added back to the head's (the long skip), sub-pixel upsampling, a 9×9 tail.
Upsampling is ×2 stages (conv → 4·width maps, PixelShuffle(2), PReLU) for scales 2, 4 and 8,
and one ×3 stage (conv → 9·width, PixelShuffle(3), PReLU) for scale 3, since 3 is not a
power of two.

PReLU has one shared slope per layer (PyTorch's default; the paper does not say channel-wise).
Convs followed by BatchNorm have no bias, because BN's shift makes it redundant; with
``norm="none"`` they get one. The output is linear (no tanh): nets see [0, 1] images and the
training modules decide what to clamp.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

SUPPORTED_SCALES = (2, 3, 4, 8)
NORMS = ("batch", "none")


def _norm(norm: str, width: int) -> nn.Module:
    return nn.BatchNorm2d(width) if norm == "batch" else nn.Identity()


class ResidualBlock(nn.Module):
    def __init__(self, width: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        self.bn1 = _norm(norm, width)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        self.bn2 = _norm(norm, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


def _upsample_stage(width: int, factor: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(width, width * factor**2, 3, padding=1),
            shuffle=nn.PixelShuffle(factor),
            act=nn.PReLU(),
        )
    )


class SRResNet(nn.Module):
    """Post-upsampling net: (N, C, H, W) LR in, (N, C, H·s, W·s) SR out."""

    upsampling = "post"

    def __init__(
        self,
        scale: int = 4,
        channels: int = 3,
        num_blocks: int = 16,
        width: int = 64,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if isinstance(scale, bool) or scale not in SUPPORTED_SCALES:
            raise ValueError(
                f"scale={scale!r} is not supported by SRResNet; supported scales: "
                f"{', '.join(map(str, SUPPORTED_SCALES))}"
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got norm={norm!r}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got channels={channels}")
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be >= 0, got num_blocks={num_blocks}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got width={width}")
        self.scale = int(scale)
        self.channels = channels

        self.head = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(channels, width, 9, padding=4), act=nn.PReLU())
        )
        self.blocks = nn.Sequential(*(ResidualBlock(width, norm) for _ in range(num_blocks)))
        self.trunk = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(width, width, 3, padding=1, bias=norm == "none"),
                bn=_norm(norm, width),
            )
        )
        factors = [3] if self.scale == 3 else [2] * (self.scale.bit_length() - 1)
        self.upsample = nn.Sequential(*(_upsample_stage(width, f) for f in factors))
        self.tail = nn.Conv2d(width, channels, 9, padding=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return self.tail(self.upsample(h + self.trunk(self.blocks(h))))
