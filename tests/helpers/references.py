"""Independent references the tests compare the code with, written from the definitions.

* MATLAB's bicubic ``imresize``, per output pixel with plain loops and the 1-based mirrored
  index rule, deliberately unlike the vectorised matrix code under test;
* RDN's BD degradation (``fspecial('gaussian')``, ``imfilter(..., 'replicate')`` on uint8,
  nearest ``imresize`` by 1/s for odd scales, the RDN code's ``s/2:s:end-s/2`` for even ones).
"""

from __future__ import annotations

import math

import numpy as np

# -- MATLAB bicubic imresize -------------------------------------------------------------------


def keys(t: float) -> float:
    """Cubic convolution kernel, a = -0.5, written as piecewise polynomials."""
    a = -0.5
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t <= 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def mirror(j: int, n: int) -> int:
    """1-based index j folded into 1..n by repeating [1..n, n..1] forever."""
    period = 2 * n
    k = (j - 1) % period  # 0..2n-1
    return k + 1 if k < n else period - k


def ref_resize_1d(line: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    n = len(line)
    shrink = scale < 1
    half = (2.0 / scale) if shrink else 2.0
    out = np.empty(out_len, dtype=np.float64)
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        first = math.floor(u - half)
        last = math.ceil(u + half)
        acc = 0.0
        norm = 0.0
        for j in range(first, last + 1):
            w = scale * keys(scale * (u - j)) if shrink else keys(u - j)
            acc += w * line[mirror(j, n) - 1]
            norm += w
        out[x - 1] = acc / norm
    return out


def ref_imresize(img: np.ndarray, out_hw: tuple[int, int], scales: tuple[float, float]):
    """Resize a 2-D float64 array: columns first, then rows (order is irrelevant)."""
    w = img.shape[1]
    tmp = np.empty((out_hw[0], w))
    for c in range(w):
        tmp[:, c] = ref_resize_1d(img[:, c], out_hw[0], scales[0])
    out = np.empty(out_hw)
    for r in range(out_hw[0]):
        out[r, :] = ref_resize_1d(tmp[r, :], out_hw[1], scales[1])
    return out


# -- RDN's BD ----------------------------------------------------------------------------------


def fspecial_gaussian(n: int, sigma: float) -> np.ndarray:
    """MATLAB fspecial('gaussian', n, sigma): meshgrid of -(n-1)/2..(n-1)/2, exp, cut, sum 1."""
    siz = (n - 1) / 2
    x, y = np.meshgrid(np.arange(-siz, siz + 1), np.arange(-siz, siz + 1))
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def imfilter_replicate_uint8(img: np.ndarray, h: np.ndarray) -> np.ndarray:
    """MATLAB imfilter(uint8 HxW, h, 'replicate'): correlation about the centre
    floor((n+1)/2) (1-based), computed in double, rounded half away from zero, saturated."""
    n = h.shape[0]
    c = (n + 1) // 2 - 1  # 0-based centre
    padded = np.pad(img.astype(np.float64), ((c, n - 1 - c), (c, n - 1 - c)), mode="edge")
    rows, cols = img.shape
    out = np.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            out[i, j] = np.sum(h * padded[i : i + n, j : j + n])
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def kept_indices(length: int, s: int) -> np.ndarray:
    """0-based indices MATLAB keeps: nearest imresize(., 1/s) for odd s (u = x s + (1 - s)/2,
    1-based x), the colon s/2:s:end-s/2 for even s."""
    if s % 2:
        x = np.arange(1, length // s + 1)
        return np.round(x * s + 0.5 * (1 - s)).astype(int) - 1
    return np.arange(s // 2, length - s // 2 + 1, s) - 1


def bd_reference(img: np.ndarray, s: int) -> np.ndarray:
    """RDN's BD of a uint8 (C, H, W) image, one channel at a time."""
    _, h, w = img.shape
    img = img[:, : h - h % s, : w - w % s]
    taps = 7 if s == 3 else 2 * math.ceil(3 * 1.6) + (1 if s % 2 else 2)
    k = fspecial_gaussian(taps, 1.6)
    rows, cols = kept_indices(img.shape[1], s), kept_indices(img.shape[2], s)
    return np.stack([imfilter_replicate_uint8(ch, k)[np.ix_(rows, cols)] for ch in img])
