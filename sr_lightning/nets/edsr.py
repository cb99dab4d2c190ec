"""EDSR (Lim et al., CVPRW 2017): a residual net without BatchNorm, sub-pixel upsampling.

A 3×3 head, ``num_blocks`` residual blocks (conv-ReLU-conv, the branch scaled by
``res_scale``, + identity), a 3×3 conv whose output is added back to the head's (the long
skip), an upsampler of ×2 stages (conv → 4·width maps, PixelShuffle(2)) for scales 2, 4
and 8 or one ×3 stage for scale 3, and a 3×3 tail. No activation after the upsampler and no
BatchNorm anywhere: the paper removes it from SRResNet's blocks (it normalises away range
flexibility and costs memory), and scales each residual branch by 0.1 in the wide model
instead to keep training stable.

RGB inputs have the DIV2K training mean (``rgb_mean``, in [0, 1]) subtracted and added back,
as in the paper's code; it is a constant, not a parameter, and is not saved in state dicts.
Luma inputs are used as they are.

Sizes: EDSR-baseline (16 blocks, 64 wide, ``res_scale`` 1) has 1,517,571 parameters at
×4, EDSR (32 blocks, 256 wide, ``res_scale`` 0.1) 43,089,923.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

SUPPORTED_SCALES = (2, 3, 4, 8)


class ResBlock(nn.Module):
    def __init__(self, width: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def _upsampler(width: int, scale: int) -> nn.Sequential:
    factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
    layers: list[nn.Module] = []
    for f in factors:
        layers += [nn.Conv2d(width, width * f * f, 3, padding=1), nn.PixelShuffle(f)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """Post-upsampling net: (N, C, H, W) LR in, (N, C, H·s, W·s) SR out."""

    upsampling = "post"

    def __init__(
        self,
        scale: int = 4,
        channels: int = 3,
        num_blocks: int = 16,
        width: int = 64,
        res_scale: float = 1.0,
        rgb_mean: Sequence[float] | None = (0.4488, 0.4371, 0.4040),
    ) -> None:
        super().__init__()
        if isinstance(scale, bool) or scale not in SUPPORTED_SCALES:
            raise ValueError(
                f"scale={scale!r} is not supported by EDSR; supported scales: "
                f"{', '.join(map(str, SUPPORTED_SCALES))}"
            )
        if channels < 1 or num_blocks < 0 or width < 1:
            raise ValueError(
                f"EDSR needs channels >= 1, num_blocks >= 0 and width >= 1; got "
                f"channels={channels}, num_blocks={num_blocks}, width={width}"
            )
        if rgb_mean is not None and channels == 3 and len(rgb_mean) != 3:
            raise ValueError(f"rgb_mean must hold 3 values (R, G, B), got {list(rgb_mean)}")
        self.scale = int(scale)
        self.channels = channels
        mean = torch.tensor(list(rgb_mean) if rgb_mean is not None and channels == 3 else [0.0])
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.Sequential(*(ResBlock(width, res_scale) for _ in range(num_blocks)))
        self.body_end = nn.Conv2d(width, width, 3, padding=1)
        self.upsample = _upsampler(width, self.scale)
        self.tail = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x - self.mean)
        h = h + self.body_end(self.body(h))
        return self.tail(self.upsample(h)) + self.mean
