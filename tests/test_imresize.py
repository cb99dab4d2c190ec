"""imresize against an independent float64 loop reference of MATLAB's bicubic.

The reference (``tests/helpers/references.ref_imresize``) is written per output pixel with plain
Python loops and the 1-based mirrored index rule, deliberately unlike the vectorised matrix
code under test, so that a shared mistake is unlikely.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sr_lightning.data.imresize import imresize, resize_matrix
from tests.helpers.references import ref_imresize

SCALES = [1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.7, 1.5, 2.5, 1 / 2.5, 0.3]
SIZES = [(12, 12), (15, 9), (7, 10)]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("hw", SIZES)
def test_matches_loop_reference(scale: float, hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(hash((scale, hw)) % 2**32)
    img = rng.random(hw)
    got = imresize(torch.from_numpy(img).float(), scale)
    out_hw = (math.ceil(hw[0] * scale - 1e-9), math.ceil(hw[1] * scale - 1e-9))
    ref = ref_imresize(img, out_hw, (scale, scale))
    assert got.shape == out_hw
    assert got.dtype == torch.float32
    assert np.abs(got.double().numpy() - ref).max() < 1e-4
    # float64 input is computed in float64 end to end.
    got64 = imresize(torch.from_numpy(img), scale)
    assert got64.dtype == torch.float64
    assert np.abs(got64.numpy() - ref).max() < 1e-12


def test_tiny_input_wraps_mirror_periodically() -> None:
    # 2 px shrunk by 1/4 has taps far beyond both borders (width 16).
    img = np.array([[0.2, 0.9], [0.4, 0.1], [1.0, 0.0]])
    for scale in (1 / 4, 3, 0.3):
        out_hw = (math.ceil(3 * scale - 1e-9), math.ceil(2 * scale - 1e-9))
        ref = ref_imresize(img, out_hw, (scale, scale))
        got = imresize(torch.from_numpy(img), scale).numpy()
        assert np.abs(got - ref).max() < 1e-12


def test_batched_4d_and_separate_axis_scales() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 13, 8, generator=gen)
    got = imresize(x, (1 / 3, 2.5))
    assert got.shape == (2, 3, 5, 20)
    for b in range(2):
        for c in range(3):
            ref = ref_imresize(x[b, c].double().numpy(), (5, 20), (1 / 3, 2.5))
            assert np.abs(got[b, c].double().numpy() - ref).max() < 1e-4


def test_size_argument_uses_ratio_as_scale() -> None:
    img = np.random.default_rng(1).random((9, 14))
    got = imresize(torch.from_numpy(img), size=(4, 21)).numpy()
    ref = ref_imresize(img, (4, 21), (4 / 9, 21 / 14))
    assert np.abs(got - ref).max() < 1e-12


@pytest.mark.parametrize("n", [9, 10, 30, 31])
@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.7, 2.5])
def test_output_size_is_ceil(n: int, scale: float) -> None:
    out = imresize(torch.rand(n, n + 1), scale)
    assert out.shape == (math.ceil(n * scale - 1e-9), math.ceil((n + 1) * scale - 1e-9))


def test_float_noise_does_not_add_a_row() -> None:
    # 10 * 0.7 == 7.000000000000001 in floating point; MATLAB users expect 7.
    assert imresize(torch.rand(10, 20), 0.7).shape == (7, 14)


@pytest.mark.parametrize("scale", [1 / 3, 0.7, 2, 4])
def test_constant_image_stays_constant(scale: float) -> None:
    x = torch.full((1, 2, 11, 6), 0.375, dtype=torch.float64)
    out = imresize(x, scale)
    assert torch.allclose(out, torch.full_like(out, 0.375), atol=1e-12)


def test_identity_scale_returns_input() -> None:
    x = torch.rand(3, 7, 5, dtype=torch.float64)
    assert torch.allclose(imresize(x, 1), x, atol=1e-15)


def test_upscaled_ramp_is_linear_in_the_interior() -> None:
    # Keys' cubic reproduces linear functions exactly, so away from the mirrored
    # borders a ramp 1..n upscaled by s lands on u = x/s + (1 - 1/s)/2.
    n, s = 12, 3
    ramp = torch.arange(1, n + 1, dtype=torch.float64).repeat(4, 1)
    out = imresize(ramp, (1, s))[0]
    x = torch.arange(1, n * s + 1, dtype=torch.float64)
    expect = x / s + 0.5 * (1 - 1 / s)
    inner = slice(2 * s, (n - 2) * s)  # at least 2 input px from each border
    assert torch.allclose(out[inner], expect[inner], atol=1e-12)
    # At the border the symmetric mirror bends the ramp. Output pixel 1 of ×2 sits
    # at u = 0.75; taps j = -1, 0, 1, 2 read pixels 2, 1, 1, 2 (mirrored) with
    # weights k(1.75), k(0.75), k(0.25), k(1.25) = -3/128, 29/128, 111/128, -9/128,
    # which sum to 1: value = (-6 + 29 + 111 - 18) / 128 = 29/32 (a straight line
    # would give 0.75).
    out2 = imresize(torch.arange(1.0, 9.0, dtype=torch.float64)[None], (1, 2))[0]
    assert out2[0].item() == pytest.approx(29 / 32, abs=1e-12)


def test_halving_impulse_gives_matlab_taps() -> None:
    # ×1/2 stretches the kernel to h(t) = k(t/2)/2; output x sits at u = 2x - 0.5, so
    # an impulse at pixel 4 is seen at distances 2.5, 0.5, 1.5, 3.5 by outputs 1..4:
    # 0.5·k(1.25), 0.5·k(0.25), 0.5·k(0.75), 0.5·k(1.75) (the classic MATLAB taps).
    line = torch.zeros(1, 8, dtype=torch.float64)
    line[0, 3] = 1.0
    out = imresize(line, (1, 0.5))[0]
    expect = torch.tensor([-0.03515625, 0.43359375, 0.11328125, -0.01171875], dtype=torch.float64)
    assert torch.allclose(out, expect, atol=1e-12)


def test_weight_matrices_are_cached_per_dtype() -> None:
    resize_matrix.cache_clear()
    x = torch.rand(2, 9, 11)
    first = imresize(x, 1 / 3)
    misses = resize_matrix.cache_info().misses
    second = imresize(x + 0, 1 / 3)
    assert resize_matrix.cache_info().misses == misses  # second call built nothing
    assert torch.equal(first, second)
    imresize(x.double(), 1 / 3)
    assert resize_matrix.cache_info().misses == misses + 2  # float64 gets its own pair


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_like_on_cpu_even_with_tf32_allowed() -> None:
    x = torch.rand(3, 2, 17, 12)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # lets float32 matmuls use TF32
    try:
        for scale in (1 / 3, 2.5):
            got = imresize(x.cuda(), scale)
            assert got.is_cuda and got.dtype == torch.float32
            assert torch.allclose(got.cpu(), imresize(x, scale), atol=1e-6)
    finally:
        torch.set_float32_matmul_precision(previous)


def test_gradient_flows_to_input() -> None:
    x = torch.rand(1, 1, 6, 6, requires_grad=True)
    imresize(x, 2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_input_raises_type_error(dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match="floating-point"):
        imresize(torch.zeros(4, 4, dtype=dtype), 2)


@pytest.mark.parametrize(
    ("x", "kwargs"),
    [
        (torch.zeros(0, 4), {"scale": 2}),
        (torch.zeros(3, 0, 4), {"scale": 2}),
        (torch.zeros(4), {"scale": 2}),
        (torch.zeros(4, 4), {"scale": 0}),
        (torch.zeros(4, 4), {"scale": -2}),
        (torch.zeros(4, 4), {"scale": float("nan")}),
        (torch.zeros(4, 4), {"scale": (2, 0)}),
        (torch.zeros(4, 4), {}),
        (torch.zeros(4, 4), {"scale": 2, "size": (8, 8)}),
        (torch.zeros(4, 4), {"size": (0, 8)}),
        (torch.zeros(4, 4), {"size": (8,)}),
    ],
)
def test_bad_arguments_raise_value_error(x: torch.Tensor, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="imresize"):
        imresize(x, **kwargs)
