"""ESPCN (Shi et al., CVPR 2016): convolutions at LR resolution, then a sub-pixel layer.

Working on the LR grid is the point: each conv costs 1/r² of the same conv on the upsampled
image. The last conv emits channels·r² maps, and ``PixelShuffle(r)`` rearranges each group of
r² maps into one r×-larger map (this is the paper's periodic shuffling). The paper does not
state an init, so PyTorch's default conv init is kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


class ESPCN(nn.Module):
    """Post-upsampling net: (N, C, H, W) LR in, (N, C, H·r, W·r) SR out."""

    upsampling = "post"

    def __init__(
        self,
        scale: int,
        channels: int = 1,
        widths: Sequence[int] = (64, 32),
        kernel_sizes: Sequence[int] = (5, 3, 3),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        widths = tuple(int(w) for w in widths)
        if isinstance(scale, bool) or int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got scale={scale!r}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got channels={channels}")
        if len(kernel_sizes) != len(widths) + 1:
            raise ValueError(
                f"kernel_sizes needs one entry per conv, i.e. len(widths) + 1 = {len(widths) + 1}; "
                f"got kernel_sizes={list(kernel_sizes)} and widths={list(widths)}"
            )
        if any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(
                f"kernel_sizes must be odd (same-size padding k//2), got kernel_sizes={list(kernel_sizes)}"
            )
        if any(w < 1 for w in widths):
            raise ValueError(f"widths must be positive, got widths={list(widths)}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got activation={activation!r}"
            )
        self.scale = int(scale)
        self.channels = channels

        sizes = (channels, *widths, channels * self.scale**2)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, k in enumerate(kernel_sizes, start=1):
            layers[f"conv{i}"] = nn.Conv2d(sizes[i - 1], sizes[i], k, padding=k // 2)
            if i < len(kernel_sizes):
                layers[f"act{i}"] = ACTIVATIONS[activation]()
        self.body = nn.Sequential(layers)
        self.shuffle = nn.PixelShuffle(self.scale)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Parameters of the conv before the shuffle (the paper trains it with lr × 0.1)."""
        return list(self.body[-1].parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))
