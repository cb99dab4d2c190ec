"""The leaf helpers of sr_lightning.common: modcrop, 8-bit rounding, the MATLAB colour formulas."""

from __future__ import annotations

import torch

from sr_lightning.common.color import rgb_to_y, rgb_to_ycbcr, to_luma_uint8, ycbcr_to_rgb
from sr_lightning.common.pixels import modcrop, quantize


def test_modcrop_cuts_bottom_and_right_to_a_multiple_of_the_scale() -> None:
    image = torch.arange(2 * 7 * 10).view(2, 7, 10)
    out = modcrop(image, 3)
    assert out.shape == (2, 6, 9)
    assert torch.equal(out, image[:, :6, :9])  # the top-left corner is kept
    assert out.data_ptr() == image.data_ptr()  # a view, no copy
    assert modcrop(image[None], 2).shape == (1, 2, 6, 10)  # batched, already a multiple in W
    assert modcrop(image, 1).shape == image.shape


def test_quantize_rounds_half_up_and_clamps() -> None:
    x = torch.tensor([-0.1, 0.5 / 255, 1.49 / 255, 1.5 / 255, 1.2])
    assert torch.equal(quantize(x) * 255, torch.tensor([0.0, 1.0, 1.0, 2.0, 255.0]))


def test_luma_of_ycbcr_is_rgb_to_y_and_the_uint8_luma() -> None:
    """One formula: rgb_to_ycbcr's Y, rgb_to_y and to_luma_uint8 (rounded) agree."""
    rgb8 = torch.randint(0, 256, (2, 3, 5, 6), generator=torch.Generator().manual_seed(0))
    rgb = rgb8.double() / 255
    y = rgb_to_y(rgb)
    assert torch.allclose(rgb_to_ycbcr(rgb)[:, :1], y, atol=1e-12)
    assert torch.equal(
        to_luma_uint8(rgb8.to(torch.uint8)).long(), torch.floor(y * 255 + 0.5).long()
    )
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
