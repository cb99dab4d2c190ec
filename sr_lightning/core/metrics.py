"""Y-channel PSNR / SSIM with border crop: the SR papers' evaluation protocol.

The published tables (SRCNN, VDSR, ESPCN, SRResNet) compute, per image:

1. the SR output rounded to 8 bits (it was saved or cast to ``uint8``);
2. luma Y with MATLAB's ``rgb2ycbcr`` formula (a grey image is its own luma);
3. ``scale`` pixels shaved from every border;
4. PSNR on the [0, 255] scale and SSIM of Wang et al. (Gaussian 11, σ 1.5,
   K1 0.01, K2 0.03, 'valid' filtering);

and then average the per-image values over the set. :func:`score_images` is that per-image
protocol, the one implementation that validation, the image panels and ``sr-eval`` use;
``SRMetrics`` hands each batch's per-image scores back (:meth:`SRMetrics.score`) and keeps
exactly their mean (not a PSNR of the pooled MSE), also under DDP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchmetrics import Metric

from sr_lightning.common.color import rgb_to_y
from sr_lightning.common.pixels import quantize

__all__ = ["ImageScores", "SRMetrics", "check_pair", "psnr_y", "score_images", "ssim_y"]

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_PEAK = 255.0


def check_pair(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> None:
    """SR and HR batches every full-reference metric accepts: equal (N, C, H, W), C 1 or 3, and
    images larger than twice the border crop."""
    if sr.shape != hr.shape or sr.dim() != 4 or sr.shape[1] not in (1, 3):
        raise ValueError(
            "expected sr and hr of equal shape (N, C, H, W) with C 1 or 3, "
            f"got {tuple(sr.shape)} and {tuple(hr.shape)}"
        )
    if crop < 0 or 2 * crop >= min(sr.shape[-2:]):
        raise ValueError(f"crop={crop} leaves nothing of a {tuple(sr.shape[-2:])} image")


def _prepare(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantized-SR and HR luma on the [0, 255] scale, float64, borders cropped."""
    check_pair(sr, hr, crop)
    sr = quantize(sr.to(torch.float64))
    hr = hr.to(torch.float64)
    if sr.shape[1] == 3:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    if crop:
        sr = sr[..., crop:-crop, crop:-crop]
        hr = hr[..., crop:-crop, crop:-crop]
    return sr * _PEAK, hr * _PEAK


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> torch.Tensor:
    """Per-image Y PSNR in dB, shape (N,), float64.

    ``sr`` and ``hr`` are float in [0, 1], (N, C, H, W) with C 1 (already luma) or 3
    (RGB). ``sr`` is rounded to 8 bits first; ``crop`` pixels go from each border.
    An image identical to its reference has MSE 0 and PSNR ``inf``.
    """
    return _psnr(*_prepare(sr, hr, crop))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR per image of prepared (cropped, [0, 255] float64) luma."""
    mse = (a - b).pow(2).mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(_PEAK**2 / mse)


def _gaussian_taps() -> tuple[float, ...]:
    """Normalised 1-D Gaussian window (11 taps, σ 1.5); its outer product is the 2-D one."""
    half = _SSIM_WINDOW // 2
    g = [math.exp(-(t * t) / (2 * _SSIM_SIGMA**2)) for t in range(-half, half + 1)]
    total = math.fsum(g)
    return tuple(v / total for v in g)


_GAUSS = _gaussian_taps()


def _blur_valid(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding over the last two dims (H-10, W-10).

    Written as 11 shifted in-place multiply-adds per axis: exact float64 and several
    times faster on CPU than float64 conv2d (no optimised kernel for 1 channel).
    """
    k = len(_GAUSS)
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = x[..., 0:h, :] * _GAUSS[0]
    for i in range(1, k):
        rows.add_(x[..., i : i + h, :], alpha=_GAUSS[i])
    out = rows[..., :, 0:w] * _GAUSS[0]
    for j in range(1, k):
        out.add_(rows[..., :, j : j + w], alpha=_GAUSS[j])
    return out


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> torch.Tensor:
    """Per-image Y SSIM (Wang et al. 2004), shape (N,), float64.

    Same inputs as ``psnr_y``. Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, L 255,
    'valid' filtering (no padding), mean of the SSIM map. The cropped image must
    be at least 11 × 11.
    """
    return _ssim(*_prepare(sr, hr, crop))


def _ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM per image of prepared (cropped, [0, 255] float64) luma."""
    if min(a.shape[-2:]) < _SSIM_WINDOW:
        raise ValueError(
            f"ssim_y: image of {tuple(a.shape[-2:])} after crop is smaller than the "
            f"{_SSIM_WINDOW}×{_SSIM_WINDOW} window"
        )
    mu_a, mu_b, e_aa, e_bb, e_ab = _blur_valid(torch.stack([a, b, a * a, b * b, a * b]))
    var_a = e_aa - mu_a**2
    var_b = e_bb - mu_b**2
    cov = e_ab - mu_a * mu_b
    c1 = (_SSIM_K1 * _PEAK) ** 2
    c2 = (_SSIM_K2 * _PEAK) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return ssim_map.mean(dim=(-3, -2, -1))


@dataclass(frozen=True, eq=False)
class ImageScores:
    """Y PSNR (dB) and Y SSIM of each image of a batch: float64 tensors of shape (N,)."""

    psnr: torch.Tensor
    ssim: torch.Tensor

    def __len__(self) -> int:
        return int(self.psnr.shape[0])

    def rows(self) -> list[tuple[float, float]]:
        """``(psnr, ssim)`` of each image as Python floats."""
        return list(zip(self.psnr.tolist(), self.ssim.tolist(), strict=True))


def score_images(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> ImageScores:
    """Per-image Y PSNR and SSIM of the papers' protocol (``psnr_y`` and ``ssim_y`` of the
    same batch, with the rounding, luma and crop done once)."""
    a, b = _prepare(sr.detach(), hr.detach(), crop)
    return ImageScores(_psnr(a, b), _ssim(a, b))


class SRMetrics(Metric):
    """Mean over images of Y PSNR and Y SSIM, as in the papers' tables.

    :meth:`score` adds a batch and returns its per-image :class:`ImageScores` (for image
    panels and per-image tables); ``update(sr, hr)`` adds a batch and returns nothing.
    States are sums over images plus a count, reduced with ``sum`` across processes,
    so the DDP result equals the single-process mean over all images. Neither does a host
    synchronisation. An image with MSE 0 makes the PSNR mean ``inf``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    psnr_sum: torch.Tensor
    ssim_sum: torch.Tensor
    count: torch.Tensor

    def __init__(self, crop: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(crop, int) or crop < 0:
            raise ValueError(f"SRMetrics: crop must be a non-negative int, got {crop!r}")
        self.crop = crop
        self.add_state(
            "psnr_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "ssim_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def score(self, sr: torch.Tensor, hr: torch.Tensor) -> ImageScores:
        """Add a batch of images (N, C, H, W), float in [0, 1]; return each image's scores."""
        scores = score_images(sr, hr, self.crop)
        self.update(scores)
        return scores

    def update(self, sr: torch.Tensor | ImageScores, hr: torch.Tensor | None = None) -> None:
        """Add a batch of images (N, C, H, W), float in [0, 1], or its :class:`ImageScores`."""
        if isinstance(sr, ImageScores):
            scores = sr
        elif hr is None:
            raise TypeError("SRMetrics.update: give sr and hr images, or ImageScores")
        else:
            scores = score_images(sr, hr, self.crop)
        self.psnr_sum += scores.psnr.sum()
        self.ssim_sum += scores.ssim.sum()
        self.count += len(scores)

    def compute(self) -> dict[str, torch.Tensor]:
        """{"psnr": mean dB, "ssim": mean} over all images seen (NaN before any update)."""
        n = self.count.to(torch.float64)
        return {"psnr": self.psnr_sum / n, "ssim": self.ssim_sum / n}
