"""The degradation kernels of ``degradation=``: BD, DN and Real-ESRGAN's (issue #25).

BD is checked bit for bit against a numpy implementation written from the MATLAB definitions
(``tests/helpers/references.bd_reference``: ``fspecial('gaussian')``, ``imfilter(...,
'replicate')`` on uint8, nearest ``imresize`` by 1/s for odd scales, the RDN code's
``s/2:s:end-s/2`` for even ones).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sr_lightning.data.degradations.bd import bd_downscale
from sr_lightning.data.degradations.dn import dn_degrade
from sr_lightning.data.degradations.kernels import blur, mixed_kernel, sinc_kernel
from sr_lightning.data.degradations.realesrgan import (
    PRESET,
    jpeg,
    realesrgan_degrade,
    realesrgan_options,
)
from sr_lightning.data.degradations.seeding import generator, sample_seeds
from tests.helpers.references import bd_reference

# -- BD: against the independent numpy reference --------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bd_is_bit_exact_against_the_matlab_definitions(scale: int) -> None:
    rng = np.random.default_rng(scale)
    # a smooth image (ties and saturation near the edges) and pure noise, uneven sizes
    yy, xx = np.mgrid[0:37, 0:29]
    smooth = 127.5 + 127.5 * np.sin(xx / 4.0)[None] * np.cos(yy / 5.0)[None]
    images = [
        np.repeat(np.round(smooth), 3, axis=0).astype(np.uint8),
        rng.integers(0, 256, (3, 37, 29), dtype=np.uint8),
    ]
    for img in images:
        expected = bd_reference(img, scale)
        got = bd_downscale(torch.from_numpy(img), scale)
        assert got.dtype == torch.uint8
        np.testing.assert_array_equal(got.numpy(), expected)
        # float input on 8-bit levels gives the same levels, batched
        batch = torch.from_numpy(np.stack([img, img])).float() / 255.0
        np.testing.assert_array_equal(
            (bd_downscale(batch, scale) * 255).round().to(torch.uint8)[1].numpy(), expected
        )


def test_bd_kernel_sizes_follow_the_issue() -> None:
    from sr_lightning.data.degradations.bd import bd_taps

    assert [bd_taps(s) for s in (2, 3, 4, 5)] == [12, 7, 12, 11]


# -- DN ----------------------------------------------------------------------------------


def test_dn_noise_has_sigma_30_and_saturates() -> None:
    flat = torch.full((4, 3, 96, 96), 128, dtype=torch.uint8)
    lr = dn_degrade(flat, 3, sample_seeds(0, 7, count=4)).double()
    noise = lr - 128.0  # the bicubic of a flat image is the image
    assert abs(noise.mean().item()) < 0.5
    assert noise.std().item() == pytest.approx(30.0, rel=0.02)
    # rounded: whole levels; samples are independent
    assert torch.equal(noise, noise.round())
    assert abs(np.corrcoef(noise[0].flatten(), noise[1].flatten())[0, 1]) < 0.05
    bright = dn_degrade(torch.full((1, 3, 60, 60), 250, dtype=torch.uint8), 3, [1])
    assert bright.max() == 255 and (bright == 255).float().mean() > 0.3


def test_dn_is_a_function_of_the_seeds() -> None:
    hr = torch.randint(0, 256, (2, 3, 30, 30), dtype=torch.uint8)
    a = dn_degrade(hr, 3, [11, 12])
    assert torch.equal(a, dn_degrade(hr, 3, [11, 12]))
    assert torch.equal(a[1:], dn_degrade(hr[1:], 3, [12]))  # not a function of the batch
    assert not torch.equal(a, dn_degrade(hr, 3, [11, 13]))
    # float input on 8-bit levels -> the same levels
    f = dn_degrade(hr.float() / 255.0, 3, [11, 12])
    assert torch.equal((f * 255).round().to(torch.uint8), a)


# -- Real-ESRGAN -------------------------------------------------------------------------


def _photo(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth structure plus texture, float in [0, 1] on 8-bit levels."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(xx / 3.0) * torch.cos(yy / 4.0)
    x = base.expand(n, 3, size, size) + 0.1 * torch.rand(n, 3, size, size, generator=g)
    return torch.round(x.clamp(0, 1) * 255) / 255


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (a - b).pow(2).mean()))


def test_realesrgan_repeats_per_sample_with_right_shapes_and_levels() -> None:
    hr = _photo(3, 64)
    seeds = sample_seeds(42, 5, 0, count=3)
    lr = realesrgan_degrade(hr, 4, seeds)
    assert lr.shape == (3, 3, 16, 16) and lr.dtype == hr.dtype
    assert lr.min() >= 0 and lr.max() <= 1
    assert torch.equal(lr * 255, (lr * 255).round())  # 8-bit levels
    assert torch.equal(lr, realesrgan_degrade(hr, 4, seeds))
    assert torch.equal(lr[2:], realesrgan_degrade(hr[2:], 4, seeds[2:]))
    assert not torch.equal(lr, realesrgan_degrade(hr, 4, sample_seeds(43, 5, 0, count=3)))
    u8 = realesrgan_degrade((hr * 255).round().to(torch.uint8), 4, seeds)
    assert u8.dtype == torch.uint8 and torch.equal(u8, (lr * 255).round().to(torch.uint8))


def test_realesrgan_options_are_the_preset_and_strict() -> None:
    assert PRESET["final_sinc_prob"] == 0.8 and PRESET["resize_range"] == [0.15, 1.5]
    assert realesrgan_options({"jpeg_range": [90, 95]})["jpeg_range"] == [90, 95]
    with pytest.raises(ValueError, match=r"jpeg_rnage.*valid: kernel_range"):
        realesrgan_options({"jpeg_rnage": [90, 95]})


def test_lower_jpeg_quality_loses_more() -> None:
    x = _photo(1, 64)
    psnrs = [_psnr(jpeg(x, q), x) for q in (95, 60, 30)]
    assert psnrs[0] > psnrs[1] > psnrs[2]


def test_blur_kernels_sum_to_one_and_wider_sigma_blurs_more() -> None:
    g = generator(0)
    opts = dict(kinds=["iso"], probs=[1.0], betag=[0.5, 4], betap=[1, 2])
    narrow = mixed_kernel(g, 21, sigma=[0.5, 0.5], **opts)
    wide = mixed_kernel(g, 21, sigma=[2.5, 2.5], **opts)
    x = _photo(1, 64)
    assert narrow.sum().item() == pytest.approx(1.0) and wide.sum().item() == pytest.approx(1.0)
    assert _psnr(blur(x, wide), x) < _psnr(blur(x, narrow), x)
    # isotropic: symmetric under transposition; a delta-like kernel leaves the image as is
    assert torch.allclose(narrow, narrow.T)
    for kind in ("aniso", "generalized_aniso", "plateau_aniso"):
        k = mixed_kernel(generator(1), 15, [kind], [1.0], [0.5, 3], [0.5, 4], [1, 2])
        assert k.shape == (15, 15) and k.sum().item() == pytest.approx(1.0)
    sharp = sinc_kernel(math.pi, 21)  # cutoff at Nyquist: the identity (up to ringing)
    soft = sinc_kernel(math.pi / 5, 21)
    assert _psnr(blur(x, sharp), x) > _psnr(blur(x, soft), x) + 5


def test_each_stage_can_be_switched_off_or_forced() -> None:
    """With every random stage off (no resize, no noise, JPEG 100, no final sinc, narrow
    Gaussian blurs) the LR is close to the area downscale of the HR; noise raises the error."""
    x = _photo(2, 64)
    quiet = {
        "kernel_prob": [1, 0, 0, 0, 0, 0],
        "kernel_prob2": [1, 0, 0, 0, 0, 0],
        "sinc_prob": 0.0,
        "sinc_prob2": 0.0,
        "blur_sigma": [0.2, 0.2],
        "blur_sigma2": [0.2, 0.2],
        "resize_prob": [0, 0, 1],
        "resize_prob2": [0, 0, 1],
        "gaussian_noise_prob": 1.0,
        "gaussian_noise_prob2": 1.0,
        "noise_range": [0.0, 0.0],
        "noise_range2": [0.0, 0.0],
        "jpeg_range": [100, 100],
        "jpeg_range2": [100, 100],
        "final_sinc_prob": 0.0,
    }
    seeds = [1, 2]
    ref = torch.nn.functional.interpolate(x, size=(16, 16), mode="area")
    clean = realesrgan_degrade(x, 4, seeds, quiet)
    noisy = realesrgan_degrade(x, 4, seeds, {**quiet, "noise_range2": [25.0, 25.0]})
    # the last resize's mode is random: bilinear / bicubic of a textured image differ from area
    assert _psnr(clean, ref) > 25
    assert _psnr(noisy, ref) < _psnr(clean, ref) - 3


@pytest.mark.parametrize("size", [(37, 53), (64, 64)])
def test_fft_blur_is_the_direct_correlation(size) -> None:
    """Kernels of 13 taps and more go through the FFT at a fast length (factors 2, 3, 5):
    the same numbers as a direct correlation with reflected borders."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, *size, generator=gen)
    kernel = torch.rand(21, 21, generator=gen)
    kernel /= kernel.sum()
    padded = F.pad(x.reshape(6, 1, *size), (10, 10, 10, 10), mode="reflect")
    direct = F.conv2d(padded, kernel[None, None]).view(2, 3, *size)
    torch.testing.assert_close(blur(x, kernel), direct, atol=1e-5, rtol=0)
