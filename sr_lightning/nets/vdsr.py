"""VDSR (Kim et al., CVPR 2016): a deep plain conv stack that learns the residual to bicubic.

Output = input + body(input), so the body only has to predict the missing high frequencies,
which is what lets 20 layers train at a high learning rate. Zero padding keeps every layer
the size of the input, as in the paper.

Init is He et al. (2015) with ``mode="fan_out"`` (std = sqrt(2 / (k²·out_channels))), the
backward-pass form of He et al.'s derivation. For the 64→64 layers fan_in equals fan_out, so
the choice only matters for the first and last layers: fan_out keeps the first layer (one
input channel) from getting std sqrt(2/9), and the forward gains of the first and last layers
cancel, so the residual starts at about the input's scale.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class VDSR(nn.Module):
    """Pre-upsampling net: input and output have the same size."""

    upsampling = "pre"
    scale: int | None = None

    def __init__(
        self, channels: int = 1, depth: int = 20, width: int = 64, bias: bool = True
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got channels={channels}")
        if depth < 2:
            raise ValueError(f"depth must be >= 2 (first and last conv), got depth={depth}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got width={width}")
        self.channels = channels

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(1, depth + 1):
            c_in = channels if i == 1 else width
            c_out = channels if i == depth else width
            layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
            if i < depth:
                layers[f"relu{i}"] = nn.ReLU(inplace=True)
        self.body = nn.Sequential(layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
