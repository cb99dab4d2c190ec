"""The bicubic baseline as a net, so it goes through exactly the same evaluation code."""

import torch
from torch import nn


class BicubicNet(nn.Module):
    """A pre-upsampling "net" that returns its input: with the module's bicubic upscale in
    front, the model is the bicubic baseline."""

    upsampling = "pre"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
