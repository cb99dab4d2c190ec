"""Chroma of video upscaled where its samples sit: left-sited 4:2:0 (MPEG-2 / H.264) against
formulas written here, centred siting against MATLAB ``imresize``, and through the pipeline."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch
from torch import nn

from sr_lightning.core.inference import Generator, Upscaler
from sr_lightning.core.video import VideoOptions, upscale_video
from sr_lightning.core.video_frames import chroma_siting
from sr_lightning.data.chroma import CENTRED, LEFT, plane_axis, resample
from sr_lightning.data.imresize import imresize
from sr_lightning.data.video import EncodeOptions, probe_video, read_planes
from tests.helpers.video import make_clip


def keys(t: float) -> float:
    """Keys' cubic convolution kernel, a = -0.5."""
    t = abs(t)
    if t <= 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t <= 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


def direct_upscale_1d(row: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each output sample as a Keys-weighted sum of the input around its position (0-based),
    edge samples mirrored (edge repeated), weights normalised: one sample at a time."""
    n = len(row)
    out = []
    for u in positions:
        taps = range(math.floor(u) - 2, math.floor(u) + 4)
        weights = np.array([keys(u - t) for t in taps])
        weights /= weights.sum()
        index = [t if 0 <= t < n else (-t - 1 if t < 0 else 2 * n - 1 - t) for t in taps]
        out.append(float(np.dot(weights, row[index])))
    return np.array(out)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_left_sited_rows_are_the_keys_sum_at_the_sited_positions(scale):
    """Output chroma J of a left-sited plane sits at output luma 2J, i.e. input luma
    (2J + 0.5)/s - 0.5, i.e. input chroma (J + 0.25)/s - 0.25."""
    rng = np.random.default_rng(scale)
    x = rng.random((3, 11))
    axis = plane_axis(11, 11 * scale, scale, 2, 2, True, True)
    rows = plane_axis(3, 3, 1, 1, 1)  # identity across rows
    got = resample(torch.from_numpy(x).float()[None], rows, axis)[0].double().numpy()
    positions = ((np.arange(11 * scale) * 2 + 0.5) / scale - 0.5) / 2
    for r in range(3):
        np.testing.assert_allclose(got[r], direct_upscale_1d(x[r], positions), atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_a_ramp_in_luma_position_stays_that_ramp(scale):
    """Cubic interpolation reproduces a linear function. Chroma whose value is 5 x the luma
    position its sample sits at (left-sited: column 2j; centred between rows 2i and 2i+1)
    must come out, away from the borders, as 5 x the input luma position of each output chroma
    sample: this fixes where the samples are, without any kernel weights."""
    h, w = 12, 16
    j = np.arange(w)
    i = np.arange(h)
    plane = 5.0 * (2 * j)[None, :] + 3.0 * (2 * i + 0.5)[:, None]
    rows = plane_axis(h, h * scale, scale, 2, 2, LEFT.y, LEFT.y)
    cols = plane_axis(w, w * scale, scale, 2, 2, LEFT.x, LEFT.x)
    got = resample(torch.from_numpy(plane).float()[None], rows, cols)[0].double().numpy()
    out_x = (2 * np.arange(w * scale) + 0.5) / scale - 0.5  # output chroma column J at luma 2J
    out_y = (2 * np.arange(h * scale) + 1.0) / scale - 0.5  # row I at luma 2I + 0.5
    expected = 5.0 * out_x[None, :] + 3.0 * out_y[:, None]
    inner = (slice(3 * scale, -3 * scale), slice(3 * scale, -3 * scale))
    np.testing.assert_allclose(got[inner], expected[inner], atol=1e-3)
    # imresize, which takes the samples as centred, lands 5 * 0.5 * (1 - 1/s) away
    centred = imresize(torch.from_numpy(plane).float()[None], size=(h * scale, w * scale))
    shift = np.abs(centred[0].double().numpy()[inner] - expected[inner]).mean()
    assert shift == pytest.approx(5 * 0.5 * (1 - 1 / scale), abs=1e-3)


@pytest.mark.parametrize(
    ("size", "scale", "sub_in", "sub_out"),
    [((9, 14), 3, 2, 2), ((5, 3), 4, 2, 2), ((18, 28), 1, 2, 1), ((18, 28), 1, 1, 2)],
)
def test_centred_siting_is_matlab_imresize(size, scale, sub_in, sub_out):
    """Chroma to chroma at scale s, chroma to luma size (x2) and luma size to chroma (/2,
    MATLAB's antialiased shrink): with centred samples, ``imresize`` of the plane."""
    h, w = size
    out = (h * scale * sub_in // sub_out, w * scale * sub_in // sub_out)
    x = torch.rand(2, 2, h, w)
    rows = plane_axis(h, out[0], scale, sub_in, sub_out, CENTRED.y, CENTRED.y)
    cols = plane_axis(w, out[1], scale, sub_in, sub_out, CENTRED.x, CENTRED.x)
    torch.testing.assert_close(resample(x, rows, cols), imresize(x, size=out), atol=2e-6, rtol=0)


def test_codecs_default_siting():
    assert chroma_siting("h264") == chroma_siting("hevc") == chroma_siting("ffv1") == LEFT
    assert chroma_siting("mjpeg") == chroma_siting("mpeg1video") == CENTRED
    assert chroma_siting("h264", "yuvj420p") == CENTRED


class Nearest(nn.Module):
    """A luma "net" with a known output: nearest-neighbour upsampling by 2."""

    upsampling = "post"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def test_the_pipeline_upscales_left_sited_chroma_where_it_sits(tmp_path):
    """A lossless clip whose U rises 10 levels a chroma column and V 10 a chroma row comes
    out of a luma model x2 (lossless too) with U = 16 + 5 x (input luma x of each output
    chroma sample, left-sited) and V = 16 + 5 (y - 0.5) (rows centred), to the rounding."""
    w, h = 48, 32

    def planes(_i: int) -> list[np.ndarray]:
        u = np.tile(16 + 10 * np.arange(w // 2), (h // 2, 1))
        v = np.tile((16 + 10 * np.arange(h // 2))[:, None], (1, w // 2))
        return [np.full((h, w), 120, np.uint8), u.astype(np.uint8), v.astype(np.uint8)]

    src = make_clip(tmp_path / "ramp.mkv", frames=2, size=(w, h), planes=planes, codec="ffv1")
    out = tmp_path / "ramp_x2.mkv"
    options = VideoOptions(encode=EncodeOptions("ffv1"), batch_size=2, precision="fp32")
    upscale_video(Upscaler(Generator(Nearest(), 2, 1), tile=0), probe_video(src), out, options)
    with av.open(str(out)) as c:
        _, u, v = read_planes(next(c.decode(video=0)))
    x = (2 * np.arange(w) + 0.5) / 2 - 0.5  # input luma x of output chroma column J
    y = (2 * np.arange(h) + 1.0) / 2 - 0.5  # input luma y of output chroma row I
    inner = (slice(6, -6), slice(6, -6))
    u_expected = np.tile(16 + 5 * x, (h, 1))
    v_expected = np.tile((16 + 5 * (y - 0.5))[:, None], (1, w))
    assert np.abs(u[inner] - u_expected[inner]).max() <= 0.5 + 1e-6
    assert np.abs(v[inner] - v_expected[inner]).max() <= 0.5 + 1e-6
