"""SRCNN (Dong et al., ECCV 2014 / TPAMI 2016): three convolutions on the bicubic-upsampled image.

The layers are patch extraction (k1, e.g. 9×9), non-linear mapping (k2: 1, 3 or 5) and
reconstruction (k3, e.g. 5×5). The papers train on "valid" convolutions and crop the target;
here every conv is padded to keep the size, so a whole image maps to a whole image.
``padding_mode="replicate"`` is what the authors' MATLAB demo does at test time
(``imfilter(..., 'same', 'replicate')``), which is why it is offered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

PADDING_MODES = ("zeros", "replicate")


class SRCNN(nn.Module):
    """Pre-upsampling net: input and output have the same size."""

    upsampling = "pre"
    scale: int | None = None

    def __init__(
        self,
        channels: int = 1,
        kernel_sizes: Sequence[int] = (9, 5, 5),
        widths: Sequence[int] = (64, 32),
        padding_mode: str = "zeros",
        init: str = "paper",
    ) -> None:
        super().__init__()
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        widths = tuple(int(w) for w in widths)
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
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {PADDING_MODES}, got padding_mode={padding_mode!r}"
            )
        if init not in ("paper", "he"):
            raise ValueError(f"init must be 'paper' or 'he', got init={init!r}")
        self.channels = channels
        self.padding_mode = padding_mode
        self.init = init

        sizes = (channels, *widths, channels)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, k in enumerate(kernel_sizes, start=1):
            layers[f"conv{i}"] = nn.Conv2d(
                sizes[i - 1], sizes[i], k, padding=k // 2, padding_mode=padding_mode
            )
            if i < len(kernel_sizes):
                layers[f"relu{i}"] = nn.ReLU(inplace=True)
        self.body = nn.Sequential(layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The papers' init, weights ~ N(0, 0.001²), or He's (``init="he"``, for short budgets:
        the paper's tiny weights need thousands of steps before the output reaches the input's
        scale); biases 0."""
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                if self.init == "he":
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, mean=0.0, std=1e-3)
                nn.init.zeros_(m.bias)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Parameters of the reconstruction conv (the papers train it with lr × 0.1)."""
        return list(self.body[-1].parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
