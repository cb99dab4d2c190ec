"""MATLAB-compatible bicubic ``imresize`` as two dense matrix products.

The benchmark papers (SRCNN, VDSR, ESPCN, SRResNet) produce their LR images with
MATLAB's ``imresize(..., 'bicubic')``; any other resampler shifts the published
numbers by tenths of a dB. This module reproduces MATLAB's definition:

* cubic kernel with a = -0.5 (Keys), support 4;
* when shrinking (scale < 1) the kernel is stretched by 1/scale and its weights
  multiplied by scale (antialiasing), so its support becomes 4/scale;
* output pixel x (1-based) samples the input at u = x/scale + 0.5 (1 - 1/scale);
* out-of-range taps are mirrored symmetrically (edge pixel repeated), periodically
  for tiny inputs, as MATLAB's ``[1:n, n:-1:1]`` index table;
* each output pixel's weights are normalised to sum to 1.

Resizing is linear and separable, so it is ``W_h @ x @ W_wᵀ`` with one
(out_len × in_len) matrix per axis. The matrices are built once in float64 and
cached per (in_len, out_len, scale, dtype, device); the products run batched on
whatever device ``x`` lives on and are differentiable with respect to ``x``.
On CUDA, inputs below float64 are multiplied in float64 and cast back, so TF32
settings cannot perturb the result (see ``_compute_dtype``).

Memory: the matrices are dense. Upscaling a 2000-px side ×4 needs an
8000 × 2000 float32 matrix (64 MB) per axis plus the intermediate image; that is
fine for training patches and whole benchmark images (on CUDA the float64 products
double that). For very large inputs use the tiled inference path instead of one
giant resize.
"""

from __future__ import annotations

import functools
import math
import operator

import numpy as np
import torch

__all__ = ["imresize", "resize_matrix"]

# Products within this distance of an integer count as that integer when computing
# the output size, so that e.g. 10 × 0.7 gives 7 rows, not 8 from float noise.
_SIZE_EPS = 1e-9


def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    at = np.abs(t)
    at2 = at * at
    at3 = at2 * at
    near = (1.5 * at3 - 2.5 * at2 + 1.0) * (at <= 1)
    far = (-0.5 * at3 + 2.5 * at2 - 4.0 * at + 2.0) * ((at > 1) & (at <= 2))
    return near + far


def _weights_1d(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense float64 (out_len, in_len) resampling matrix for one axis."""
    if scale < 1:
        # Antialiasing: stretch the kernel over 1/scale input pixels.
        def kernel(t: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * t)

        width = 4.0 / scale
    else:
        kernel = _cubic
        width = 4.0

    x = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based output coordinates
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # matching 1-based input position
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    w = kernel(u[:, None] - idx)
    w /= w.sum(axis=1, keepdims=True)

    # Symmetric border: index table [1..n, n..1], applied periodically.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]

    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(mat, (rows, src.ravel()), w.ravel())  # mirrored taps may repeat
    return mat


@functools.lru_cache(maxsize=64)
def resize_matrix(
    in_len: int, out_len: int, scale: float, dtype: torch.dtype, device: str
) -> torch.Tensor:
    """Cached (out_len, in_len) matrix that resizes one axis; do not modify it."""
    mat = torch.from_numpy(_weights_1d(in_len, out_len, scale))
    return mat.to(device=torch.device(device), dtype=dtype)


def _pair(value: float | tuple[float, float], name: str) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"imresize: {name} must be a number or a pair, got {value!r}")
        return float(value[0]), float(value[1])
    return float(value), float(value)


def _plan(
    in_hw: tuple[int, int],
    scale: float | tuple[float, float] | None,
    size: tuple[int, int] | None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output size and per-axis scale, following MATLAB's scale/size rules."""
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of `scale` or `size`")
    if scale is not None:
        scales = _pair(scale, "scale")
        if not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"imresize: scale must be finite and > 0, got {scale!r}")
        out = tuple(math.ceil(n * s - _SIZE_EPS) for n, s in zip(in_hw, scales, strict=True))
    else:
        try:
            out = tuple(operator.index(n) for n in size)
        except TypeError:
            out = ()
        if len(out) != 2 or min(out) <= 0:
            raise ValueError(f"imresize: size must be two positive ints, got {size!r}")
        # MATLAB: a requested size implies scale = out / in on each axis.
        scales = (out[0] / in_hw[0], out[1] / in_hw[1])
    return (out[0], out[1]), (scales[0], scales[1])


def imresize(
    x: torch.Tensor,
    scale: float | tuple[float, float] | None = None,
    *,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Resize the last two dims of ``x`` like MATLAB ``imresize(x, scale, 'bicubic')``.

    Args:
        x: floating tensor shaped (..., H, W); leading dims are batched.
        scale: one factor or (scale_h, scale_w); output is ceil(H*scale) × ceil(W*scale).
        size: (out_h, out_w) instead of ``scale``; then scale = out / in per axis.

    Returns:
        Tensor (..., out_h, out_w) with the dtype and device of ``x``. Values are not
        clamped or rounded (bicubic overshoots slightly outside [0, 1]).

    Raises:
        TypeError: ``x`` is not a floating-point tensor (convert uint8 images first).
        ValueError: ``x`` has fewer than 2 dims or a zero-size dim, or the
            scale/size is missing, ambiguous or not positive.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"imresize: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"imresize: expected a floating-point tensor, got {x.dtype}; "
            "convert images first, e.g. x.float() / 255"
        )
    if x.dim() < 2:
        raise ValueError(f"imresize: expected a tensor shaped (..., H, W), got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"imresize: got an empty tensor of shape {tuple(x.shape)}")

    in_h, in_w = x.shape[-2], x.shape[-1]
    (out_h, out_w), (scale_h, scale_w) = _plan((in_h, in_w), scale, size)
    dtype = _compute_dtype(x)
    device = str(x.device)
    w_h = resize_matrix(in_h, out_h, scale_h, dtype, device)
    w_w = resize_matrix(in_w, out_w, scale_w, dtype, device)
    xc = x.to(dtype)

    # Same result either way; pick the order with fewer multiply-adds.
    rows_first = out_h * in_w * (in_h + out_w) <= in_h * out_w * (in_w + out_h)
    # autocast (bf16-mixed validation) would run these products in bfloat16: off, as for TF32
    with torch.autocast(device_type=x.device.type, enabled=False):
        if rows_first:
            out = torch.matmul(torch.matmul(w_h, xc), w_w.T)
        else:
            out = torch.matmul(w_h, torch.matmul(xc, w_w.T))
    return out.to(x.dtype)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """dtype of the matrix products: x's own, except below float64 on CUDA.

    CUDA float32 matmuls may silently run in TF32 (10-bit mantissa) once anyone calls
    ``torch.set_float32_matmul_precision("high")``, as Lightning recommends on recent
    GPUs; that costs ~1e-3, a quarter of an 8-bit level, and breaks MATLAB parity.
    Doing the (cheap, memory-bound) products in float64 is immune to that global
    switch without touching it.
    """
    if x.device.type == "cuda" and x.dtype != torch.float64:
        return torch.float64
    return x.dtype
