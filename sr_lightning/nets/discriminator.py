"""The SRGAN discriminator (Ledig et al., CVPR 2017), made to accept any crop size.

Eight 3×3 convs with LeakyReLU(0.2) (BatchNorm on all but the first), widths
64, 64, 128, 128, 256, 256, 512, 512 (× base_width/64) and strides alternating 1, 2, so the
feature map is the input / 16 (rounded up). The paper flattens that map straight into a
1024-unit dense layer, which ties the net to its 96×96 training crops.

Choice made here: an ``nn.AdaptiveAvgPool2d(6)`` before flattening. At 96×96 the map is
already 6×6, the pool is the identity, and the dense layer sees exactly the paper's 512·6·6
features; at other crop sizes (64, 128, 40, …) it averages (or, below 96, repeats) cells to
a 6×6 grid, so the same weights work and nothing has to be configured from the crop size.

The output is one logit per image, no sigmoid: the loss uses BCE-with-logits, which is
numerically safer than sigmoid + BCE.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

NORMS = ("batch", "none")
POOL_SIZE = 6


class Discriminator(nn.Module):
    """(N, C, H, W) image in, (N, 1) real-vs-fake logits out."""

    def __init__(
        self,
        channels: int = 3,
        base_width: int = 64,
        dense_width: int = 1024,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got norm={norm!r}")
        for key, value in (
            ("channels", channels),
            ("base_width", base_width),
            ("dense_width", dense_width),
        ):
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {key}={value}")

        widths = [base_width * m for m in (1, 1, 2, 2, 4, 4, 8, 8)]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = channels
        for i, c_out in enumerate(widths, start=1):
            stride = 2 if i % 2 == 0 else 1
            use_bn = norm == "batch" and i > 1
            layers[f"conv{i}"] = nn.Conv2d(
                c_in, c_out, 3, stride=stride, padding=1, bias=not use_bn
            )
            if use_bn:
                layers[f"bn{i}"] = nn.BatchNorm2d(c_out)
            layers[f"act{i}"] = nn.LeakyReLU(0.2, inplace=True)
            c_in = c_out
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(POOL_SIZE)
        self.classifier = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(c_in * POOL_SIZE * POOL_SIZE, dense_width),
                act=nn.LeakyReLU(0.2, inplace=True),
                fc2=nn.Linear(dense_width, 1),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
