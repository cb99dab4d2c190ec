"""Tiled inference: tiles reproduce the whole-image output, colour handling, bounded memory."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from sr_lightning.common.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from sr_lightning.core.inference import (
    Generator,
    Upscaler,
    measure_receptive_radius,
    plan_axis,
    plan_tiles,
)
from sr_lightning.data.imresize import imresize
from sr_lightning.nets import ESPCN, SRCNN, VDSR, SRResNet


def _spread_weights(net: nn.Module, std: float, seed: int = 0) -> nn.Module:
    """Weights large enough that every input pixel in the receptive field visibly matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
    return net.eval()


def srcnn_x3() -> Generator:
    return Generator(_spread_weights(SRCNN(channels=1), 0.05), 3, 1, "pre", "srcnn")


def vdsr_x2() -> Generator:
    return Generator(_spread_weights(VDSR(channels=3, depth=5, width=8), 0.1), 2, 3, "pre", "vdsr")


def espcn_x3() -> Generator:
    torch.manual_seed(0)
    return Generator(ESPCN(scale=3, channels=1).eval(), 3, 1, "post", "espcn")


def srresnet_x2() -> Generator:
    torch.manual_seed(0)
    net = SRResNet(scale=2, channels=3, num_blocks=2, width=16).eval()
    with torch.no_grad():  # BN running stats away from identity, as after training
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return Generator(net, 2, 3, "post", "srresnet")


def random_image(h: int, w: int, c: int, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    """Smooth-ish content plus noise, so that every tile has structure."""
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(yy / 5.0)[:, :, None] * np.cos(xx / 7.0)[:, :, None]
    noisy = np.clip(base + 0.2 * rng.random((h, w, c)), 0, 1)
    return np.round(noisy * peak).astype(dtype)


# -- tile planning ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 31, 32, 33, 100, 257])
@pytest.mark.parametrize("tile", [0, 1, 5, 16, 32, 300])
@pytest.mark.parametrize("overlap", [0, 3, 10])
def test_tiles_partition_the_image_and_see_their_context(length, tile, overlap):
    spans = plan_axis(length, tile, overlap)
    # cores partition [0, length) in order
    assert spans[0].core0 == 0 and spans[-1].core1 == length
    for a, b in itertools.pairwise(spans):
        assert a.core1 == b.core0
    sizes = {s.win1 - s.win0 for s in spans}
    assert len(sizes) == 1, "all windows must have one size (batchable)"
    for s in spans:
        assert 0 <= s.win0 <= s.core0 < s.core1 <= s.win1 <= length
        assert s.core1 - s.core0 <= max(tile, 1) or len(spans) == 1
        # every kept pixel has `overlap` pixels of context, or reaches the image border
        assert s.core0 - s.win0 >= min(overlap, s.core0)
        assert s.win1 - s.core1 >= min(overlap, length - s.core1)


def test_whole_image_when_the_tile_is_zero_or_larger():
    assert len(plan_tiles(40, 50, 0, 8)) == 1
    assert len(plan_tiles(40, 50, 64, 8)) == 1
    assert len(plan_tiles(40, 50, 16, 8)) == 3 * 4


# -- receptive field ----------------------------------------------------------------------


@pytest.mark.parametrize(("kernels", "radius"), [((5, 3, 3), 4), ((9, 5, 5), 8), ((3, 3, 3), 3)])
def test_measured_receptive_radius_matches_the_kernel_sizes(kernels, radius):
    """Stride-1 convs at LR: the radius is the sum of the kernels' half-widths."""
    torch.manual_seed(0)
    net = ESPCN(scale=2, channels=1, widths=(8, 8), kernel_sizes=kernels).eval()
    with torch.no_grad():
        assert measure_receptive_radius(net, 1, 2) == radius


def test_pre_upsampling_radius_covers_the_bicubic_kernel():
    """SRCNN at x3: 8 HR pixels of convs (3 LR pixels) on top of bicubic's 2 LR pixels."""
    up = Upscaler(srcnn_x3())
    assert 4 <= up.receptive_radius <= 3 + 2
    # a net that sees only its own pixel still needs the bicubic margin
    identity = Generator(nn.Identity(), 3, 1, "pre")
    assert Upscaler(identity).receptive_radius == 2


# -- tiled == untiled ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "channels"),
    [(espcn_x3, 3), (srresnet_x2, 3), (srcnn_x3, 3), (vdsr_x2, 3), (srcnn_x3, 1), (espcn_x3, 4)],
    ids=["espcn-rgb", "srresnet", "srcnn-rgb", "vdsr", "srcnn-grey", "espcn-rgba"],
)
def test_tiled_output_equals_the_whole_image_output(make, channels):
    gen = make()
    image = random_image(37, 45, channels, seed=1)
    whole = Upscaler(gen, tile=0).upscale(image)
    tiled_up = Upscaler(gen, tile=12, tile_overlap="auto", batch_size=3)
    tiled = tiled_up.upscale(image)
    assert len(tiled_up.last_tiles) == 4 * 4
    assert tiled.shape == whole.shape and tiled.dtype == np.uint8
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    # in float the only difference is rounding noise
    f_whole = Upscaler(gen, tile=0).upscale(image.astype(np.float32) / 255)
    f_tiled = tiled_up.upscale(image.astype(np.float32) / 255)
    assert np.abs(f_tiled - f_whole).max() < 1e-4


def test_an_overlap_short_of_the_receptive_field_shows_seams():
    """The control: without enough context the tiles differ, so the test above can fail."""
    gen = srcnn_x3()
    image = random_image(37, 45, 1, seed=1).astype(np.float32) / 255
    whole = Upscaler(gen, tile=0).upscale(image)
    seams = Upscaler(gen, tile=12, tile_overlap=1).upscale(image)
    assert np.abs(seams - whole).max() > 2 / 255


def test_explicit_overlap_equal_to_the_radius_is_enough():
    gen = espcn_x3()  # 5-3-3 convs: radius 4
    image = random_image(30, 41, 1, seed=2).astype(np.float32) / 255
    whole = Upscaler(gen, tile=0).upscale(image)
    tiled = Upscaler(gen, tile=8, tile_overlap=4).upscale(image)
    assert np.abs(tiled - whole).max() < 1e-5


# -- agreement with the training module's forward -----------------------------------------


@pytest.mark.parametrize("make", [srcnn_x3, espcn_x3, srresnet_x2, vdsr_x2])
def test_whole_image_equals_net_on_the_papers_input(make):
    """Post nets see the LR, pre nets its MATLAB bicubic upscale: as in SRModule.forward."""
    gen = make()
    lr = torch.from_numpy(random_image(20, 26, gen.channels, seed=3)).permute(2, 0, 1).float()
    lr = lr.unsqueeze(0) / 255
    x = imresize(lr, float(gen.scale)) if gen.pre_upsampling else lr
    with torch.no_grad():
        expected = gen.net(x)[0]
    got = Upscaler(gen, tile=7).upscale_tensor(lr[0])
    assert torch.allclose(got, expected, atol=1e-5)


# -- colour -------------------------------------------------------------------------------


def test_ycbcr_matches_matlab_reference_values():
    rgb = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]).T.reshape(3, 3, 1)
    ycc = rgb_to_ycbcr(rgb).reshape(3, 3).T * 255
    # MATLAB rgb2ycbcr([1 0 0; 1 1 1; 0 0 0]) on doubles, times 255
    expected = torch.tensor([[81.481, 90.203, 240.0], [235.0, 128.0, 128.0], [16.0, 128.0, 128.0]])
    assert torch.allclose(ycc, expected, atol=1e-3)
    x = torch.rand(2, 3, 5, 4)
    assert torch.allclose(rgb_to_ycbcr(x)[:, :1], rgb_to_y(x), atol=1e-6)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5)


def test_luma_model_upscales_y_with_the_net_and_cbcr_with_bicubic():
    gen = espcn_x3()
    image = random_image(16, 20, 3, seed=4).astype(np.float32) / 255
    sr = Upscaler(gen).upscale(image)
    lr_ycc = rgb_to_ycbcr(torch.from_numpy(image).permute(2, 0, 1)).unsqueeze(0)
    sr_ycc = rgb_to_ycbcr(torch.from_numpy(sr).permute(2, 0, 1)).unsqueeze(0)
    with torch.no_grad():
        y = gen.net(lr_ycc[:, :1])
    assert torch.allclose(sr_ycc[:, :1], y, atol=1e-5)
    assert torch.allclose(sr_ycc[:, 1:], imresize(lr_ycc[:, 1:], 3.0), atol=1e-5)


def test_grey_images_stay_grey():
    image = random_image(14, 18, 1, seed=5)
    # a luma model takes grey as its own luma
    luma = espcn_x3()
    sr = Upscaler(luma).upscale(image[:, :, 0])
    assert sr.shape == (42, 54) and sr.dtype == np.uint8
    lr = torch.from_numpy(image).permute(2, 0, 1).float().unsqueeze(0) / 255
    with torch.no_grad():
        expected = torch.floor(luma.net(lr).clamp(0, 1) * 255 + 0.5)[0, 0].numpy()
    assert np.abs(sr.astype(int) - expected).max() <= 1
    # an RGB model sees R = G = B and its output is averaged back to one channel
    rgb = srresnet_x2()
    sr = Upscaler(rgb).upscale(image)
    with torch.no_grad():
        expected = rgb.net(lr.expand(-1, 3, -1, -1)).mean(dim=1)[0]
    expected = torch.floor(expected.clamp(0, 1) * 255 + 0.5).numpy()
    assert sr.shape == (28, 36, 1)
    assert np.abs(sr[:, :, 0].astype(int) - expected).max() <= 1


def test_alpha_is_upscaled_with_bicubic_and_colour_as_without_it():
    gen = srresnet_x2()
    rgba = random_image(15, 17, 4, seed=6)
    sr = Upscaler(gen).upscale(rgba)
    assert sr.shape == (30, 34, 4)
    np.testing.assert_array_equal(sr[:, :, :3], Upscaler(gen).upscale(rgba[:, :, :3]))
    alpha = torch.from_numpy(rgba[:, :, 3]).float() / 255
    expected = torch.floor(imresize(alpha, 2.0).clamp(0, 1) * 255 + 0.5).numpy()
    assert np.abs(sr[:, :, 3].astype(int) - expected).max() <= 1


def test_sixteen_bit_images_stay_sixteen_bit():
    gen = srresnet_x2()
    image16 = random_image(12, 13, 3, seed=7, dtype=np.uint16)
    sr16 = Upscaler(gen).upscale(image16)
    assert sr16.dtype == np.uint16
    sr_float = Upscaler(gen).upscale(image16.astype(np.float32) / 65535)
    expected = np.floor(np.clip(sr_float, 0, 1) * 65535 + 0.5)
    assert np.abs(sr16.astype(np.int64) - expected).max() <= 1
    assert len(np.unique(sr16)) > 256, "the output uses more than 8 bits of levels"


# -- bounded memory -----------------------------------------------------------------------


class ShapeRecorder(nn.Module):
    """Wraps a net and records the shape of every input it is called with."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.net(x)


def test_windows_are_bounded_by_tile_plus_overlap_and_batched():
    base = espcn_x3()
    recorder = ShapeRecorder(base.net)
    gen = Generator(recorder, 3, 1, "post")
    up = Upscaler(gen, tile=10, tile_overlap=4, batch_size=4)
    image = random_image(47, 61, 1, seed=8)
    recorder.shapes.clear()
    out = up.upscale(image)
    assert out.dtype == np.uint8  # the output buffer is the output dtype, not float
    n_tiles = len(up.last_tiles)
    assert n_tiles == 5 * 7
    assert len(recorder.shapes) == -(-n_tiles // 4)  # ceil: batches of 4 windows
    for n, _c, h, w in recorder.shapes:
        assert n <= 4 and h <= 10 + 2 * 4 and w <= 10 + 2 * 4


def test_auto_tile_fits_the_memory_budget(monkeypatch):
    import sr_lightning.core.inference as inference

    gen = srresnet_x2()
    up = Upscaler(gen, tile="auto", tile_overlap=6)
    per_pixel = up.bytes_per_window_pixel()
    assert per_pixel > 16 * 4 * 4  # at least the 16 float32 maps at the x2 size of SRResNet
    monkeypatch.setattr(inference, "free_memory_bytes", lambda device: 10**12)
    assert up.tile_for(200, 250, 3) == (0, 0)  # fits: whole image
    assert up.tile_for(300, 400, 3) == (inference._CPU_MAX_AUTO_TILE, 6)  # CPU: capped tiles
    budget = int(per_pixel * 60 * 60 / up.memory_fraction)
    monkeypatch.setattr(inference, "free_memory_bytes", lambda device: budget)
    tile, overlap = up.tile_for(300, 400, 3)
    assert overlap == 6 and tile > 0 and tile + 2 * overlap <= 60  # a window fits the budget
    image = random_image(70, 90, 3, seed=9)
    out = up.upscale(image)
    assert len(up.last_tiles) > 1
    np.testing.assert_allclose(out, Upscaler(gen, tile=0).upscale(image), atol=1)


# -- options ------------------------------------------------------------------------------


def test_channels_last_and_bf16_give_the_same_image():
    gen = srresnet_x2()
    image = random_image(16, 16, 3, seed=10)
    ref = Upscaler(gen).upscale(image).astype(int)
    cl = Upscaler(gen, channels_last=True).upscale(image).astype(int)
    assert np.abs(cl - ref).max() <= 1
    bf16 = Upscaler(gen, precision="bf16").upscale(image).astype(int)
    assert np.abs(bf16 - ref).mean() < 2.0  # bf16 keeps 8 bits of mantissa


def test_bad_options_are_named():
    gen = espcn_x3()
    with pytest.raises(ValueError, match="precision"):
        Upscaler(gen, precision="fp8")
    with pytest.raises(ValueError, match="tile"):
        Upscaler(gen, tile=-1)
    with pytest.raises(ValueError, match="CUDA"):
        if torch.cuda.is_available():
            raise ValueError("CUDA is available here: nothing to refuse")
        Upscaler(gen, device="cuda")
    with pytest.raises(ValueError, match="expected an image"):
        Upscaler(gen).upscale(np.zeros((4, 4, 5), dtype=np.uint8))


def test_a_wrong_scale_is_a_clear_error():
    gen = Generator(espcn_x3().net, 2, 1, "post")  # the net is x3
    with pytest.raises(RuntimeError, match="scale"):
        Upscaler(gen).upscale(random_image(8, 8, 1))
