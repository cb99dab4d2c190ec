"""One evaluation core: SRMetrics' per-image scores, shared by validation, the image panels and
sr-eval, and the one evaluation LR/HR pair (data.eval_pair) of the data module and sr-eval."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sr_lightning.core.metrics import ImageScores, SRMetrics, psnr_y, score_images, ssim_y
from sr_lightning.data.degradation import bicubic_upscale
from sr_lightning.data.eval_pair import eval_pair
from sr_lightning.data.images import load_image
from sr_lightning.runtime.callbacks import ImagePanels


def _offset_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Two flat grey images and SR off by 1 and by 16 levels: MSE 1 and 256."""
    hr = torch.full((2, 1, 20, 20), 128 / 255, dtype=torch.float64)
    sr = hr.clone()
    sr[0] += 1 / 255
    sr[1] += 16 / 255
    return sr, hr


def test_score_returns_each_images_psnr_and_adds_it_to_the_mean() -> None:
    sr, hr = _offset_pair()
    metric = SRMetrics(crop=2)
    scores = metric.score(sr, hr)
    # PSNR = 10 log10(255² / MSE): MSE 1 -> 48.1308 dB, MSE 256 -> 24.0654 dB
    expect = [10 * math.log10(255**2 / 1), 10 * math.log10(255**2 / 256)]
    assert len(scores) == 2
    assert scores.psnr.tolist() == pytest.approx(expect, abs=1e-9)
    # a constant offset of flat images leaves SSIM's structure term 1, luminance term below 1
    mu, d = 128.0, [1.0, 16.0]
    c1 = (0.01 * 255) ** 2
    ssim = [(2 * mu * (mu + x) + c1) / (mu**2 + (mu + x) ** 2 + c1) for x in d]
    assert scores.ssim.tolist() == pytest.approx(ssim, abs=1e-12)
    out = metric.compute()
    assert out["psnr"].item() == pytest.approx(sum(expect) / 2, abs=1e-9)
    assert metric.count.item() == 2


def test_score_images_equals_psnr_y_and_ssim_y_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(5)
    hr = torch.randint(0, 256, (3, 3, 24, 26), generator=gen).double() / 255
    sr = hr + 0.04 * torch.randn(hr.shape, generator=gen, dtype=torch.float64)
    scores = score_images(sr, hr, 3)
    assert torch.equal(scores.psnr, psnr_y(sr, hr, 3))
    assert torch.equal(scores.ssim, ssim_y(sr, hr, 3))
    # scoring image by image gives the mean of updating with the whole batch
    a, b = SRMetrics(crop=3), SRMetrics(crop=3)
    a.update(sr, hr)
    for i in range(3):
        b.score(sr[i : i + 1], hr[i : i + 1])
    a_out, b_out = a.compute(), b.compute()
    assert a_out["psnr"].item() == pytest.approx(b_out["psnr"].item(), abs=1e-12)
    assert a_out["ssim"].item() == pytest.approx(b_out["ssim"].item(), abs=1e-12)


def test_update_without_hr_is_refused() -> None:
    with pytest.raises(TypeError, match="ImageScores"):
        SRMetrics(crop=1).update(torch.zeros(1, 1, 8, 8))


def test_image_panel_table_uses_the_scores_validation_returned(monkeypatch) -> None:
    """The per-image table shows validation's own scores; nothing is scored twice."""
    import sr_lightning.runtime.callbacks as callbacks

    def fail(*args, **kwargs):
        raise AssertionError("the callback scored the images again")

    monkeypatch.setattr(callbacks, "score_images", fail)
    panels = ImagePanels(num_images=1, table=True)
    panels._active = True
    hr = torch.rand(1, 1, 12, 12)
    outputs = {
        "sr": hr,
        "bicubic": hr,
        "scores": ImageScores(torch.tensor([31.5]), torch.tensor([0.875])),
        "bicubic_scores": ImageScores(torch.tensor([30.25]), torch.tensor([0.75])),
    }
    module = SimpleNamespace(scale=2, eval_set_names=lambda stage: ["Set5"])
    batch = {"lr": hr[..., ::2, ::2], "hr": hr, "name": "baby", "index": 0}
    panels.on_validation_batch_end(None, module, outputs, batch, batch_idx=0)
    (row,) = panels._rows
    assert (row["set"], row["image"], row["psnr"], row["ssim"]) == ("Set5", "baby", 31.5, 0.875)
    assert row["psnr_bicubic"] == 30.25 and row["gain"] == 1.25
    assert len(panels._panels) == 1


# ---------------------------------------------------------------- the evaluation pair


def test_eval_pair_modcrops_converts_and_leaves_lr_unrounded() -> None:
    gen = torch.Generator().manual_seed(2)
    rgb = torch.randint(0, 256, (3, 10, 13), generator=gen, dtype=torch.uint8)
    hr, lr = eval_pair(rgb, 4, channels=1)
    # MATLAB rgb2ycbcr's Y, rounded to uint8, of the 8 x 12 top-left corner
    r, g, b = rgb[:, :8, :12].double().unbind(0)
    y = torch.floor(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255 + 0.5)
    assert hr.shape == (1, 8, 12) and hr.dtype == torch.float32
    assert torch.equal(hr[0] * 255, y.float())
    assert lr.shape == (1, 2, 3)
    # a bicubic mean of 8-bit levels is not on the 8-bit grid: the LR is not rounded
    assert not torch.equal(lr * 255, (lr * 255).round())


def test_eval_pair_of_a_flat_image_is_flat_and_grey_stays_its_own_luma() -> None:
    grey = torch.full((2, 1, 12, 12), 77, dtype=torch.uint8)
    hr, lr = eval_pair(grey, 3, channels=1)  # a batch; grey is its own luma
    assert torch.equal(hr, torch.full((2, 1, 12, 12), 77 / 255))
    # bicubic weights sum to one: a flat image downscales to the same level
    assert torch.allclose(lr, torch.full((2, 1, 4, 4), 77 / 255), atol=1e-6)
    rgb_hr, _ = eval_pair(grey, 3, channels=3)
    assert rgb_hr.shape == (2, 3, 12, 12)


def test_eval_pair_wants_uint8() -> None:
    with pytest.raises(TypeError, match="uint8"):
        eval_pair(torch.zeros(1, 8, 8), 2)


@pytest.mark.parametrize(("scale", "published"), [(2, 33.66), (3, 30.39), (4, 28.42)])
def test_eval_pair_and_srmetrics_give_the_published_set5_bicubic(
    data_dir, scale: int, published: float
) -> None:
    """VDSR Table 3, bicubic on Set5: 33.66 / 30.39 / 28.42 dB."""
    metric = SRMetrics(crop=scale)
    for path in sorted((data_dir / "Set5").glob("*.png")):
        hr, lr = eval_pair(load_image(path).unsqueeze(0), scale, channels=1)
        metric.score(bicubic_upscale(lr, scale), hr)
    assert metric.count.item() == 5
    assert round(metric.compute()["psnr"].item(), 2) == published
