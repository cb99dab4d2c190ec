"""Y-channel PSNR / SSIM, luma conversion and the image-averaged SRMetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sr_lightning.common.color import rgb_to_y, to_luma_uint8
from sr_lightning.common.pixels import quantize
from sr_lightning.core.metrics import SRMetrics, psnr_y, ssim_y


def _levels(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random image on exact 8-bit levels, float64 in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=gen).double() / 255


# ---------------------------------------------------------------- luma


def test_rgb_to_y_matches_matlab_formula() -> None:
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    expect = (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255
    y = rgb_to_y(x)
    assert y.shape == (2, 1, 4, 5)
    assert torch.allclose(y[:, 0], expect, atol=1e-12)
    # Range: black -> 16/255, white -> 235/255.
    corners = rgb_to_y(torch.tensor([0.0, 1.0]).view(1, 2).expand(3, 2)[..., None])
    assert torch.allclose(corners.flatten(), torch.tensor([16 / 255, 235 / 255]))


def test_rgb_to_y_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="3, H, W"):
        rgb_to_y(torch.rand(1, 4, 5, 5))


def test_to_luma_uint8_rounds_like_matlab() -> None:
    gen = torch.Generator().manual_seed(3)
    img = torch.randint(0, 256, (2, 3, 7, 9), generator=gen, dtype=torch.uint8)
    y = to_luma_uint8(img)
    assert y.dtype == torch.uint8 and y.shape == (2, 1, 7, 9)
    rgb = img.double()
    exact = 16 + (65.481 * rgb[:, 0] + 128.553 * rgb[:, 1] + 24.966 * rgb[:, 2]) / 255
    assert torch.equal(y[:, 0], torch.floor(exact + 0.5).to(torch.uint8))
    # Hand-checked values: black 16, white 235, pure red 16 + 65.481 = 81.481 -> 81.
    pix = torch.tensor([[0, 255, 255], [0, 255, 0], [0, 255, 0]], dtype=torch.uint8)[:, None, :]
    assert to_luma_uint8(pix).flatten().tolist() == [16, 235, 81]


def test_to_luma_uint8_exact_tie_rounds_up() -> None:
    # 65481·2 + 128553·44 + 24966·141 = 36.5 · 255000, so Y = 52.5 exactly, and
    # (0, 204, 68) gives Y = 125.5. Exact arithmetic rounds both half up (MATLAB's
    # round) -> 53, 126; half-to-even would give 52 for the first.
    assert 65481 * 2 + 128553 * 44 + 24966 * 141 == 36.5 * 255000
    assert 128553 * 204 + 24966 * 68 == 109.5 * 255000
    pix = torch.tensor([[2, 0], [44, 204], [141, 68]], dtype=torch.uint8)[:, None, :]
    assert to_luma_uint8(pix).flatten().tolist() == [53, 126]


def test_grey_image_is_its_own_luma() -> None:
    grey = torch.arange(0, 256, dtype=torch.uint8).view(1, 16, 16)
    assert torch.equal(to_luma_uint8(grey), grey)
    # Not the same as treating it as RGB with R=G=B (that maps 0..255 to 16..235).
    assert not torch.equal(to_luma_uint8(grey.expand(3, 16, 16)), grey)


def test_to_luma_uint8_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        to_luma_uint8(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="1 or 3"):
        to_luma_uint8(torch.zeros(2, 4, 4, dtype=torch.uint8))


def test_quantize_clamps_and_rounds_half_up() -> None:
    # Half up like MATLAB's uint8(): 0.5 -> 1 and 2.5 -> 3 (half-to-even gives 0 and 2).
    x = torch.tensor([-0.3, 0.0, 0.5, 0.49, 2.5, 100.6, 255.0, 400.0], dtype=torch.float64) / 255
    expect = torch.tensor([0, 0, 1, 0, 3, 101, 255, 255], dtype=torch.float64) / 255
    assert torch.allclose(quantize(x), expect, atol=1e-7)


# ---------------------------------------------------------------- PSNR


def test_psnr_matches_closed_formula() -> None:
    hr = torch.full((1, 1, 10, 10), 100 / 255, dtype=torch.float64)
    sr = hr.clone()
    sr[..., 0, 0] += 10 / 255  # one pixel off by 10 levels
    mse = 10**2 / 100
    assert psnr_y(sr, hr, crop=0).item() == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)


def test_psnr_constant_offset_and_per_image() -> None:
    hr = torch.full((2, 1, 8, 8), 0.5, dtype=torch.float64)
    hr = quantize(hr)
    sr = hr.clone()
    sr[0] += 2 / 255
    sr[1] += 5 / 255
    got = psnr_y(sr, hr, crop=0)
    assert got.shape == (2,) and got.dtype == torch.float64
    for i, d in enumerate((2, 5)):
        assert got[i].item() == pytest.approx(20 * math.log10(255 / d), abs=1e-9)


def test_psnr_rgb_uses_luma_of_quantized_sr() -> None:
    hr = _levels((1, 3, 9, 9), seed=1)
    sr = (
        hr
        + torch.randn(hr.shape, generator=torch.Generator().manual_seed(2), dtype=hr.dtype) * 0.03
    )
    a = rgb_to_y(quantize(sr)) * 255
    b = rgb_to_y(hr) * 255
    expect = 10 * torch.log10(255**2 / (a - b).pow(2).mean())
    assert psnr_y(sr, hr, crop=0).item() == pytest.approx(expect.item(), abs=1e-9)


def test_psnr_quantizes_sr_before_measuring() -> None:
    hr = _levels((1, 1, 6, 6), seed=4)
    sr = hr + 0.4 / 255  # rounds back onto hr
    assert math.isinf(psnr_y(sr, hr, crop=0).item())


def test_crop_removes_border_on_every_side() -> None:
    hr = torch.full((1, 1, 12, 12), 128 / 255, dtype=torch.float64)
    sr = hr.clone()
    for sl in [(0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1)]:
        sr[..., sl[0], sl[1]] = 1.0  # outermost ring only
    assert math.isinf(psnr_y(sr, hr, crop=1).item())
    assert not math.isinf(psnr_y(sr, hr, crop=0).item())
    # Crop 2 measures exactly the central 8 x 8.
    sr2 = _levels((1, 1, 12, 12), seed=5)
    hr2 = _levels((1, 1, 12, 12), seed=6)
    assert torch.allclose(
        psnr_y(sr2, hr2, crop=2), psnr_y(sr2[..., 2:-2, 2:-2], hr2[..., 2:-2, 2:-2], crop=0)
    )


def test_shape_mismatch_and_oversized_crop_raise() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        psnr_y(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9), crop=0)
    with pytest.raises(ValueError, match="crop"):
        psnr_y(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), crop=4)
    with pytest.raises(ValueError, match="window"):
        ssim_y(torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12), crop=1)


# ---------------------------------------------------------------- SSIM


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_skimage(seed: int) -> None:
    # skimage filters the full image with a reflect-padded 11-tap Gaussian
    # (truncate 3.5 × σ 1.5 -> radius 5) and then averages the SSIM map after
    # cropping (11 - 1) // 2 = 5 px per side. Those interior values never touch the
    # padding, so its mean is exactly the mean of our 'valid' map: agreement is to
    # float64 rounding, with no border adjustment needed (its full=True map differs
    # only in that 5-px ring).
    hr = _levels((1, 1, 37, 50), seed=seed)
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(seed + 10))
    sr = quantize(hr + 0.05 * noise.double())
    ref = structural_similarity(
        sr[0, 0].numpy() * 255,
        hr[0, 0].numpy() * 255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    got = ssim_y(sr, hr, crop=0).item()
    assert got == pytest.approx(ref, abs=1e-10)
    # With a crop, skimage on the cropped luma gives the same number.
    ref3 = structural_similarity(
        sr[0, 0, 3:-3, 3:-3].numpy() * 255,
        hr[0, 0, 3:-3, 3:-3].numpy() * 255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ssim_y(sr, hr, crop=3).item() == pytest.approx(ref3, abs=1e-10)


def test_ssim_rgb_matches_skimage_on_luma() -> None:
    hr = _levels((2, 3, 24, 30), seed=7)
    sr = quantize(hr + 0.04 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(8)))
    got = ssim_y(sr, hr, crop=2)
    for i in range(2):
        ys = (rgb_to_y(sr)[i, 0, 2:-2, 2:-2] * 255).numpy()
        yh = (rgb_to_y(hr)[i, 0, 2:-2, 2:-2] * 255).numpy()
        ref = structural_similarity(
            ys, yh, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert got[i].item() == pytest.approx(ref, abs=1e-10)


def test_ssim_identical_is_one() -> None:
    x = _levels((3, 1, 20, 20), seed=9)
    assert torch.allclose(ssim_y(x, x, crop=2), torch.ones(3, dtype=torch.float64))


# ---------------------------------------------------------------- SRMetrics


def test_srmetrics_averages_per_image_values_not_pooled_mse() -> None:
    hr = torch.full((2, 1, 16, 16), 128 / 255, dtype=torch.float64)
    sr = hr.clone()
    sr[0] += 1 / 255  # MSE 1   -> 48.13 dB
    sr[1] += 16 / 255  # MSE 256 -> 24.05 dB
    metric = SRMetrics(crop=2)
    metric.update(sr[:1], hr[:1])
    metric.update(sr[1:], hr[1:])
    out = metric.compute()
    p = [20 * math.log10(255 / 1), 20 * math.log10(255 / 16)]
    assert out["psnr"].item() == pytest.approx(sum(p) / 2, abs=1e-9)
    pooled = 10 * math.log10(255**2 / ((1 + 256) / 2))
    assert abs(out["psnr"].item() - pooled) > 1.0
    expect_ssim = ssim_y(sr, hr, crop=2).mean().item()
    assert out["ssim"].item() == pytest.approx(expect_ssim, abs=1e-12)
    assert metric.count.item() == 2


def test_srmetrics_batches_equal_single_pass_and_reset() -> None:
    hr = _levels((5, 3, 20, 22), seed=11)
    sr = quantize(hr + 0.03 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(12)))
    a, b = SRMetrics(crop=3), SRMetrics(crop=3)
    a.update(sr, hr)
    b.update(sr[:2], hr[:2])
    b.update(sr[2:], hr[2:])
    ra, rb = a.compute(), b.compute()
    assert torch.allclose(ra["psnr"], psnr_y(sr, hr, 3).mean())
    assert torch.allclose(ra["psnr"], rb["psnr"]) and torch.allclose(ra["ssim"], rb["ssim"])
    a.reset()
    assert a.count.item() == 0


def test_srmetrics_merged_ranks_give_the_global_mean() -> None:
    # merge_state applies each state's dist_reduce_fx, as a DDP sync does; with uneven
    # per-rank image counts only sums + count (not a mean of means) stay exact.
    hr = _levels((5, 1, 20, 20), seed=14)
    sr = quantize(hr + torch.linspace(0.005, 0.08, 5, dtype=torch.float64).view(5, 1, 1, 1))
    rank0, rank1 = SRMetrics(crop=2), SRMetrics(crop=2)
    rank0.update(sr[:1], hr[:1])
    rank1.update(sr[1:], hr[1:])
    rank0.merge_state(rank1)
    out = rank0.compute()
    assert out["psnr"].item() == pytest.approx(psnr_y(sr, hr, 2).mean().item(), abs=1e-9)
    assert out["ssim"].item() == pytest.approx(ssim_y(sr, hr, 2).mean().item(), abs=1e-12)
    assert rank0.count.item() == 5


def test_srmetrics_rejects_bad_crop() -> None:
    with pytest.raises(ValueError, match="crop"):
        SRMetrics(crop=-1)


def test_float32_input_gives_the_float64_result() -> None:
    # Computation is float64 inside, whatever the input dtype.
    hr = _levels((1, 1, 16, 16), seed=13)
    sr = quantize(hr + 0.02)
    assert np.isclose(psnr_y(sr.float(), hr.float(), 0).item(), psnr_y(sr, hr, 0).item())
