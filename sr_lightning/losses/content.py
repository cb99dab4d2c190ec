"""VGG19 feature ("content", perceptual) loss of SRGAN.

The frozen VGG is deliberately kept *out of the module tree*: it is stored as a
plain attribute, not a registered submodule. So it never appears in
``state_dict()`` (checkpoints stay small and ``load_state_dict(strict=True)``
of a model owning the loss expects no VGG keys), in ``parameters()`` (no
optimizer, parameter count, DDP bucket or ``requires_grad_`` toggle ever sees
it), and a parent's ``.train()`` cannot reach it. Device and dtype moves still
reach it because :meth:`VGGContentLoss._apply` forwards them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import vgg as tv_vgg

from sr_lightning.common.pretrained import (
    WeightsUnavailableError,
    hub_cache_path,
    load_backbone_state_dict,
    load_features,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BLOCK_CONVS = (2, 2, 4, 4, 4)  # VGG19 = torchvision config "E"


def _layer_indices() -> dict[str, int]:
    """``conv{b}_{i}`` / ``relu{b}_{i}`` → index in torchvision's ``vgg19().features``."""
    names, index = {}, 0
    for block, convs in enumerate(_BLOCK_CONVS, start=1):
        for i in range(1, convs + 1):
            names[f"conv{block}_{i}"] = index
            names[f"relu{block}_{i}"] = index + 1
            index += 2
        index += 1  # max-pool closing the block
    return names


VGG19_LAYERS: dict[str, int] = _layer_indices()


# the content loss and the perceptual metrics share one weights loader (sr_lightning.common.pretrained)
VGGWeightsUnavailableError = WeightsUnavailableError


def vgg19_cache_path() -> Path:
    """Where torch.hub keeps the weights: ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``."""
    return hub_cache_path("vgg19")


def load_vgg19_state_dict(weights_path: str | Path | None = None) -> dict[str, Tensor]:
    """torchvision VGG19 IMAGENET1K_V1 weights, from ``weights_path`` or the torch.hub cache.

    See :func:`sr_lightning.common.pretrained.load_backbone_state_dict`: the cache is verified
    against torchvision's hash, downloaded only when missing, and a failure says which
    file to put where.
    """
    state, _ = load_backbone_state_dict(
        "vgg19",
        weights_path,
        user="the content loss",
        key="loss.content.weights_path",
        off="for offline smoke runs, loss.content.pretrained=false uses random weights",
    )
    return state


def build_vgg19_features(layer: str) -> nn.Sequential:
    """torchvision's randomly initialised ``vgg19().features``, cut right after ``layer``.

    Module indices (hence state-dict keys) are those of torchvision's model, so
    its ``features.*`` weights load directly.
    """
    if layer not in VGG19_LAYERS:
        raise ValueError(f"unknown VGG19 layer {layer!r}; valid: {', '.join(VGG19_LAYERS)}")
    cut = VGG19_LAYERS[layer] + 1
    config, produced = [], 0  # only the config entries needed to reach `cut` modules
    for entry in tv_vgg.cfgs["E"]:
        if produced >= cut:
            break
        config.append(entry)
        produced += 1 if entry == "M" else 2  # conv + ReLU
    features = tv_vgg.make_layers(config, batch_norm=False)[:cut]
    for module in features.modules():  # torchvision's VGG init, so random features don't vanish
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return features


def _load_features(features: nn.Sequential, state: dict[str, Tensor], source: Path | str) -> None:
    load_features(features, state, source, "vgg19")


class VGGContentLoss(nn.Module):
    """``criterion(φ(sr)·rescale, φ(hr)·rescale)`` with φ = VGG19 features up to ``layer``.

    ``layer``: ``relu5_4`` is SRGAN's φ5,4 (VGG54), ``relu2_2`` its φ2,2 (VGG22);
    ``conv5_4`` is the pre-activation feature used by ESRGAN. SRGAN rescales the
    *feature maps* by 1/12.75 (``rescale``) before the MSE, which scales the MSE
    by 1/12.75² ≈ 0.006 so it is comparable to a pixel MSE. (The paper used Caffe
    VGG on [0, 255] inputs; with torchvision's normalised inputs magnitudes differ,
    so treat the factor as a tunable weight.)

    Inputs are RGB in [0, 1], shape (N, 3, H, W); ImageNet mean/std normalisation
    happens inside. One-channel (luma) inputs are repeated to three channels, a
    grey image, which VGG was not trained on: prefer RGB for perceptual training.
    The HR features are computed without gradient.

    Weights: ``weights_path`` (a torchvision vgg19 state dict; only ``features.*``
    is used) wins; else ``pretrained=True`` loads torchvision's IMAGENET1K_V1
    from the torch.hub cache (downloading it if possible); ``pretrained=False``
    gives random weights for tests and offline smoke runs, with a warning.
    """

    def __init__(
        self,
        layer: str = "relu5_4",
        criterion: Literal["mse", "l1"] = "mse",
        rescale: float = 1 / 12.75,
        pretrained: bool = True,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        if criterion not in ("mse", "l1"):
            raise ValueError(f"unknown content criterion {criterion!r}; valid: 'mse', 'l1'")
        features = build_vgg19_features(layer)
        if weights_path is not None:
            _load_features(features, load_vgg19_state_dict(weights_path), weights_path)
            self.weights = str(weights_path)
        elif pretrained:
            _load_features(features, load_vgg19_state_dict(), vgg19_cache_path())
            self.weights = "IMAGENET1K_V1"
        else:
            warnings.warn(
                "VGGContentLoss uses randomly initialised VGG19 weights (pretrained=False): "
                "fine for tests and smoke runs, meaningless as a perceptual loss",
                UserWarning,
                stacklevel=2,
            )
            self.weights = "random"
        features.requires_grad_(False).eval()
        object.__setattr__(self, "_vgg", features)  # not a registered submodule: see module doc
        self.layer = layer
        self.criterion = criterion
        self.rescale = float(rescale)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    @property
    def vgg(self) -> nn.Sequential:
        """The frozen, truncated VGG19 features (not part of this module's state)."""
        return self._vgg

    def _apply(self, fn, recurse: bool = True):  # .to() / .cuda() / .half() reach the VGG too
        super()._apply(fn, recurse)
        self._vgg._apply(fn)
        return self

    def train(self, mode: bool = True) -> VGGContentLoss:
        super().train(mode)
        self._vgg.eval()  # always: a parent's .train() must not change the feature extractor
        return self

    def features(self, x: Tensor) -> Tensor:
        """φ(x) for x in [0, 1], (N, 1 or 3, H, W)."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected (N, 1 or 3, H, W) images in [0, 1], got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self._vgg((x - self.mean) / self.std)

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        if sr.shape != hr.shape:
            raise ValueError(f"sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
        phi_sr = self.features(sr)
        with torch.no_grad():
            phi_hr = self.features(hr)
        loss = F.mse_loss if self.criterion == "mse" else F.l1_loss
        return loss(phi_sr * self.rescale, phi_hr * self.rescale)

    def extra_repr(self) -> str:
        return (
            f"layer={self.layer!r}, criterion={self.criterion!r}, rescale={self.rescale:.6g}, "
            f"weights={self.weights!r}"
        )
