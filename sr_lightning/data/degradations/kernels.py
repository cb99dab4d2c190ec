"""Random blur kernels of Real-ESRGAN's degradation (Wang et al., ICCVW'21, Sec. 3.2).

Gaussian (isotropic / anisotropic), generalized Gaussian and plateau kernels of a random odd
size, and the 2-D sinc (circular low-pass) filter, drawn from a ``torch.Generator`` and built
in float64 on the CPU (they are small); :func:`blur` applies one kernel per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["blur", "mixed_kernel", "random_kernel", "sinc_kernel", "uniform"]

KINDS = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)


def uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def choice(g: torch.Generator, weights: Sequence[float]) -> int:
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    return int(torch.multinomial(w / w.sum(), 1, generator=g))


def _grid(size: int) -> torch.Tensor:
    """(size, size, 2) pixel offsets from the centre, x then y."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def _quadratic(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """x^T Sigma^-1 x on the grid, Sigma = R diag(sx^2, sy^2) R^T rotated by theta."""
    c, s = math.cos(theta), math.sin(theta)
    # Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T, written out (a 3-operand einsum cost 8 ms)
    ix, iy = 1.0 / sigma_x**2, 1.0 / sigma_y**2
    a, b, d = c * c * ix + s * s * iy, c * s * (ix - iy), s * s * ix + c * c * iy
    grid = _grid(size)
    x, y = grid[..., 0], grid[..., 1]
    return a * x * x + 2.0 * b * x * y + d * y * y


def shaped_kernel(
    kind: str, size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> torch.Tensor:
    """One kernel of ``kind`` ('gaussian', 'generalized', 'plateau'), normalised to sum 1."""
    q = _quadratic(size, sigma_x, sigma_y, theta)
    if kind == "gaussian":
        k = torch.exp(-0.5 * q)
    elif kind == "generalized":
        k = torch.exp(-0.5 * q.pow(beta))
    elif kind == "plateau":
        k = 1.0 / (q.pow(beta) + 1.0)
    else:
        raise ValueError(f"unknown kernel shape {kind!r}")
    return k / k.sum()


def mixed_kernel(
    g: torch.Generator,
    size: int,
    kinds: Sequence[str],
    probs: Sequence[float],
    sigma: Sequence[float],
    betag: Sequence[float],
    betap: Sequence[float],
) -> torch.Tensor:
    """A kernel of a kind drawn with ``probs``: sigmas in ``sigma``, rotation in [-pi, pi]
    (anisotropic), shape beta below or above 1 with equal odds, within ``betag`` / ``betap``."""
    kind = kinds[choice(g, probs)]
    if kind not in KINDS:
        raise ValueError(f"unknown blur kernel {kind!r}; one of {', '.join(KINDS)}")
    sx = uniform(g, *sigma)
    sy, theta = (
        (sx, 0.0)
        if kind.endswith("iso") and not kind.endswith("aniso")
        else (
            uniform(g, *sigma),
            uniform(g, -math.pi, math.pi),
        )
    )
    shape = "gaussian" if kind in ("iso", "aniso") else kind.split("_")[0]
    beta = 1.0
    if shape != "gaussian":
        low, high = betag if shape == "generalized" else betap
        beta = uniform(g, low, 1.0) if uniform(g, 0.0, 1.0) < 0.5 else uniform(g, 1.0, high)
    return shaped_kernel(shape, size, sx, sy, theta, beta)


def sinc_kernel(cutoff: float, size: int, pad_to: int = 0) -> torch.Tensor:
    """2-D sinc: the circular low-pass filter of angular ``cutoff`` (pi: none), ``size`` odd,
    normalised to sum 1, zero-padded to ``pad_to``."""
    r = _grid(size).norm(dim=-1)
    safe = torch.where(r == 0, 1.0, r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, cutoff**2 / (4 * math.pi), k)
    k = k / k.sum()
    pad = max(0, (pad_to - size) // 2)
    return F.pad(k, (pad, pad, pad, pad))


def random_kernel(g: torch.Generator, opts: dict, suffix: str = "") -> torch.Tensor:
    """One pass's blur kernel (``suffix`` '' or '2'): a sinc with ``sinc_prob``, else a mixed
    kernel; odd size drawn from ``kernel_range``, zero-padded to its maximum."""
    low, high = opts["kernel_range"]
    size = 2 * int(torch.randint(low // 2, high // 2 + 1, (), generator=g)) + 1
    if uniform(g, 0.0, 1.0) < opts[f"sinc_prob{suffix}"]:
        cutoff = uniform(g, math.pi / 3, math.pi) if size < 13 else uniform(g, math.pi / 5, math.pi)
        return sinc_kernel(cutoff, size, high)
    k = mixed_kernel(
        g,
        size,
        opts[f"kernel_list{suffix}"],
        opts[f"kernel_prob{suffix}"],
        opts[f"blur_sigma{suffix}"],
        opts[f"betag_range{suffix}"],
        opts[f"betap_range{suffix}"],
    )
    pad = (high - size) // 2
    return F.pad(k, (pad, pad, pad, pad))


def trim(kernel: torch.Tensor) -> torch.Tensor:
    """``kernel`` without its all-zero border (the padding of smaller kernels to one size)."""
    k = kernel.shape[-1]
    nonzero = (kernel != 0).any(dim=0) | (kernel != 0).any(dim=1)
    first = int(nonzero.to(torch.int8).argmax())
    first = min(first, (k - 1) // 2)
    return kernel[first : k - first, first : k - first]


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of ``x`` (N, C, H, W) with ``kernel`` (k, k), reflect borders.

    Zero borders of the kernel are dropped first; kernels of 13 taps and more go through the
    FFT (a few times faster on a CPU than a 21x21 direct convolution).
    """
    kernel = trim(kernel).to(x)
    k = kernel.shape[-1]
    n, c, h, w = x.shape
    mode = "reflect" if min(h, w) > k // 2 else "replicate"
    xp = F.pad(x, (k // 2,) * 4, mode=mode)
    if k < 13:
        return F.conv2d(xp.reshape(n * c, 1, *xp.shape[-2:]), kernel[None, None]).view(n, c, h, w)
    # a transform length with factors 2, 3, 5 only (276 = 4 * 3 * 23 took twice as long);
    # at least the padded side, so the part kept is the linear correlation
    size = tuple(fast_length(d) for d in xp.shape[-2:])
    spectrum = torch.fft.rfft2(xp, s=size) * torch.fft.rfft2(kernel.flip(0, 1), s=size)
    return torch.fft.irfft2(spectrum, s=size)[..., k - 1 : k - 1 + h, k - 1 : k - 1 + w]


def fast_length(n: int) -> int:
    """The smallest m >= n whose prime factors are 2, 3 and 5 (a fast FFT length)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1
