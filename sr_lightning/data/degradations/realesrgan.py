"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW'21), on any device.

Each sample goes through: blur (a random kernel of :mod:`.kernels`), a random resize (up,
down or kept; area, bilinear or bicubic), Gaussian or Poisson noise (colour or grey), JPEG;
then the same again with the second set of ranges (the blur with ``second_blur_prob``); then,
in random order, [resize to HR / scale and a sinc filter] and JPEG. The result is rounded to
8-bit levels. The probabilities and ranges are :data:`PRESET` (the paper's released
training options), each overridable (``conf/degradation/realesrgan.yaml``).

Every draw of sample ``i`` comes from a CPU generator seeded by ``seeds[i]``, and every
resize is per sample, so a sample's LR does not depend on its batch, device or run. JPEG is
libjpeg / nvJPEG through torchvision's ``encode_jpeg`` / ``decode_jpeg`` (Real-ESRGAN uses a
differentiable JPEG; the LR is not differentiated here). Real-ESRGAN draws the resize scale
once per batch; here it is drawn per sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from sr_lightning.data.degradations.kernels import blur, choice, random_kernel, sinc_kernel, uniform
from sr_lightning.data.degradations.seeding import generator

__all__ = ["PRESET", "jpeg", "realesrgan_degrade", "realesrgan_options"]

_KINDS = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
_KIND_PROBS = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]

# Real-ESRGAN's released options (train_realesrnet_x4plus.yml)
PRESET: dict = {
    "kernel_range": [7, 21],
    # first pass
    "kernel_list": _KINDS,
    "kernel_prob": _KIND_PROBS,
    "sinc_prob": 0.1,
    "blur_sigma": [0.2, 3.0],
    "betag_range": [0.5, 4.0],
    "betap_range": [1.0, 2.0],
    "resize_prob": [0.2, 0.7, 0.1],  # up, down, keep
    "resize_range": [0.15, 1.5],
    "gaussian_noise_prob": 0.5,
    "noise_range": [1.0, 30.0],
    "poisson_scale_range": [0.05, 3.0],
    "gray_noise_prob": 0.4,
    "jpeg_range": [30.0, 95.0],
    # second pass
    "second_blur_prob": 0.8,
    "kernel_list2": _KINDS,
    "kernel_prob2": _KIND_PROBS,
    "sinc_prob2": 0.1,
    "blur_sigma2": [0.2, 1.5],
    "betag_range2": [0.5, 4.0],
    "betap_range2": [1.0, 2.0],
    "resize_prob2": [0.3, 0.4, 0.3],
    "resize_range2": [0.3, 1.2],
    "gaussian_noise_prob2": 0.5,
    "noise_range2": [1.0, 25.0],
    "poisson_scale_range2": [0.05, 2.5],
    "gray_noise_prob2": 0.4,
    "jpeg_range2": [30.0, 95.0],
    # last: the sinc filter (with this probability) and JPEG, in random order
    "final_sinc_prob": 0.8,
}

MODES = ("area", "bilinear", "bicubic")


def realesrgan_options(overrides: Mapping | None = None) -> dict:
    """:data:`PRESET` with ``overrides``; an unknown key is an error naming the valid ones."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(PRESET))
    if unknown:
        raise ValueError(
            f"unknown realesrgan degradation option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(PRESET)}"
        )
    return {**PRESET, **overrides}


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def random_resize(
    x: torch.Tensor, g: torch.Generator, probs, scale_range, base: tuple[float, float]
) -> torch.Tensor:
    """Up (scale in [1, max]), down ([min, 1]) or keep, relative to ``base`` (h, w)."""
    kind = choice(g, probs)
    low, high = scale_range
    s = uniform(g, 1.0, high) if kind == 0 else uniform(g, low, 1.0) if kind == 1 else 1.0
    mode = MODES[choice(g, [1, 1, 1])]
    return resize(x, (int(base[0] * s), int(base[1] * s)), mode)


def gaussian(x: torch.Tensor, g: torch.Generator, sigma: float, gray: bool) -> torch.Tensor:
    shape = (1, 1 if gray else x.shape[1], *x.shape[-2:])
    noise = torch.randn(shape, generator=g, dtype=torch.float32).to(x) * (sigma / 255.0)
    return x + noise


def poisson(x: torch.Tensor, g: torch.Generator, scale: float, gray: bool) -> torch.Tensor:
    img = x.detach().float().cpu().clamp(0, 1)
    if gray and img.shape[1] == 3:
        img = (img * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    levels = int(
        torch.bincount(torch.round(img * 255.0).long().flatten(), minlength=256).count_nonzero()
    )
    vals = 2 ** math.ceil(math.log2(max(levels, 2)))
    noise = torch.poisson(img * vals, generator=g) / vals - img
    return x + noise.to(x) * scale


def add_noise(x: torch.Tensor, g: torch.Generator, opts: dict, suffix: str) -> torch.Tensor:
    """Gaussian noise (sigma in ``noise_range`` on [0, 255]) with ``gaussian_noise_prob``,
    else Poisson (``poisson_scale_range``); grey (the same in every channel) with
    ``gray_noise_prob``. Clamped to [0, 1]."""
    use_gaussian = uniform(g, 0, 1) < opts[f"gaussian_noise_prob{suffix}"]
    gray = uniform(g, 0, 1) < opts[f"gray_noise_prob{suffix}"]
    if use_gaussian:
        x = gaussian(x, g, uniform(g, *opts[f"noise_range{suffix}"]), gray)
    else:
        x = poisson(x, g, uniform(g, *opts[f"poisson_scale_range{suffix}"]), gray)
    return x.clamp(0.0, 1.0)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of (1, C, H, W) in [0, 1] at ``quality`` (nvJPEG for RGB on CUDA)."""
    img = torch.floor(x[0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    on_device = img.device.type == "cuda" and img.shape[0] == 3
    if not on_device:
        img = img.cpu()
    data = encode_jpeg(img, quality=int(quality))
    out = decode_jpeg(data.cpu() if not on_device else data, device=img.device)
    return out.to(x.device, x.dtype).unsqueeze(0) / 255.0


def degrade_one(x: torch.Tensor, scale: int, g: torch.Generator, opts: dict) -> torch.Tensor:
    """One sample (1, C, H, W), float in [0, 1] -> its LR (1, C, H // scale, W // scale)."""
    h, w = x.shape[-2:]
    k1 = random_kernel(g, opts)
    k2 = random_kernel(g, opts, "2")
    final = None
    if uniform(g, 0, 1) < opts["final_sinc_prob"]:
        low, high = opts["kernel_range"]
        size = 2 * int(torch.randint(low // 2, high // 2 + 1, (), generator=g)) + 1
        final = sinc_kernel(uniform(g, math.pi / 3, math.pi), size, high)
    # first order
    x = blur(x, k1)
    x = random_resize(x, g, opts["resize_prob"], opts["resize_range"], (h, w))
    x = add_noise(x, g, opts, "")
    x = jpeg(x, round(uniform(g, *opts["jpeg_range"])))
    # second order
    if uniform(g, 0, 1) < opts["second_blur_prob"]:
        x = blur(x, k2)
    x = random_resize(x, g, opts["resize_prob2"], opts["resize_range2"], (h / scale, w / scale))
    x = add_noise(x, g, opts, "2")
    # last: [resize back + sinc] and JPEG, in random order
    mode = MODES[choice(g, [1, 1, 1])]
    quality = round(uniform(g, *opts["jpeg_range2"]))
    sinc_first = uniform(g, 0, 1) < 0.5
    if not sinc_first:
        x = jpeg(x, quality)
    x = resize(x, (h // scale, w // scale), mode)
    if final is not None:
        x = blur(x, final)
    if sinc_first:
        x = jpeg(x, quality)
    return x


def realesrgan_degrade(
    hr: torch.Tensor, scale: int, seeds: Sequence[int], options: Mapping | None = None
) -> torch.Tensor:
    """The LR of an HR batch (N, C, H, W), uint8 or float in [0, 1], one seed per sample.

    The LR (N, C, H // scale, W // scale) is on 8-bit levels, of the input's dtype, on its
    device. ``options`` override :data:`PRESET`.
    """
    if hr.dim() != 4 or len(seeds) != hr.shape[0]:
        raise ValueError(
            f"realesrgan_degrade: expected (N, C, H, W) and N seeds, got {tuple(hr.shape)}"
        )
    opts = realesrgan_options(options)
    is_uint8 = hr.dtype == torch.uint8
    x = hr.float() / 255.0 if is_uint8 else hr.float()
    lrs = [degrade_one(x[i : i + 1], scale, generator(s), opts) for i, s in enumerate(seeds)]
    lr = torch.floor(torch.cat(lrs).clamp(0.0, 1.0) * 255.0 + 0.5)
    return lr.to(torch.uint8) if is_uint8 else (lr / 255.0).to(hr.dtype)
