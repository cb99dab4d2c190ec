"""Chroma planes resampled where their samples sit, with MATLAB's bicubic arithmetic.

4:2:0 and 4:2:2 chroma samples do not all sit in the middle of the luma pixels they cover.
MPEG-2, H.264 and H.265 put them **left**: level with the even luma columns, and (4:2:0)
half-way between two luma rows; JPEG and MPEG-1 centre them both ways. ``imresize`` treats a
plane as a picture of its own (samples centred in their cells), so it would move left-sited
chroma by 0.25·(1 − 1/s) of an LR chroma sample to the right when it upscales s times.

Here positions are luma pixels of each picture, pixel centres at integers. Along an axis
subsampled ``f`` times (f = 2 for 4:2:0 and 4:2:2 across, f = 1 where there is no
subsampling), sample ``j`` sits at f·j when it is co-sited with the first luma sample it
covers (left, top) and at f·j + (f − 1)/2 when centred. An output picture ``s`` times larger
maps its luma position X to (X + 0.5)/s − 0.5 in the input's. The arithmetic is MATLAB's
``imresize``: Keys cubic (a = −0.5), the kernel stretched when shrinking, symmetric borders,
each output sample's weights normalised to 1; with centred siting the result is ``imresize``'s.

A resize at a rational ratio repeats its weights every period, so each axis runs as one small
matrix per block of samples (overlapping windows of the input times a block matrix): some
40 multiply-adds per output sample instead of a whole row of ``imresize``'s dense matrix.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from sr_lightning.data.imresize import _cubic

__all__ = ["CENTRED", "LEFT", "Axis", "Siting", "plane_axis", "resample"]

# output samples per block of the block matrix (rounded to whole periods of the ratio)
_BLOCK = 24


@dataclass(frozen=True)
class Siting:
    """Whether chroma samples are co-sited with the first luma sample they cover, per axis
    (else centred among the luma samples they cover)."""

    x: bool
    y: bool


LEFT = Siting(x=True, y=False)  # MPEG-2, H.264, H.265: the default of most video
CENTRED = Siting(x=False, y=False)  # JPEG, MPEG-1


@dataclass(frozen=True)
class Axis:
    """One axis of a resample: output sample J reads the input at J / ratio + shift."""

    in_len: int
    out_len: int
    ratio: Fraction  # output samples per input sample
    shift: float  # in input samples, 0-based


def _first(sub: int, cosited: bool) -> float:
    """Luma position of sample 0 of a plane subsampled ``sub`` times along an axis."""
    return 0.0 if cosited else (sub - 1) / 2


def plane_axis(
    in_len: int,
    out_len: int,
    scale: int,
    sub_in: int,
    sub_out: int,
    cosited_in: bool = False,
    cosited_out: bool = False,
) -> Axis:
    """The axis from a plane subsampled ``sub_in`` times to one subsampled ``sub_out`` times
    in a picture ``scale`` times larger, each plane's samples co-sited or centred."""
    ratio = Fraction(scale * sub_in, sub_out)
    start = (_first(sub_out, cosited_out) + 0.5) / scale - 0.5  # input luma of output sample 0
    return Axis(in_len, out_len, ratio, (start - _first(sub_in, cosited_in)) / sub_in)


def _weights(u: np.ndarray, ratio: Fraction) -> tuple[np.ndarray, np.ndarray]:
    """(taps, weights) of output samples at input positions ``u``, as MATLAB computes them."""
    k = min(1.0, float(ratio))  # shrinking: the kernel is stretched by 1/ratio (antialiasing)
    width = 4.0 / k
    taps = np.floor(u - width / 2)[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    w = k * _cubic(k * (u[:, None] - taps))
    return taps.astype(np.int64), w / w.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=32)
def _plan(axis: Axis) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(input index table, block matrix (L, b_out), input stride b_in, b_out) of ``axis``."""
    p, q = axis.ratio.numerator, axis.ratio.denominator
    periods = max(1, round(_BLOCK / p))
    b_out, b_in = p * periods, q * periods
    taps, w = _weights(np.arange(b_out) * q / p + axis.shift, axis.ratio)
    lo = int(taps.min())
    length = int(taps.max()) - lo + 1
    block = np.zeros((length, b_out))
    np.add.at(block, (taps - lo, np.arange(b_out)[:, None]), w)
    blocks = -(-axis.out_len // b_out)
    n = axis.in_len
    mirror = np.concatenate([np.arange(n), np.arange(n)[::-1]])  # MATLAB's symmetric border
    table = mirror[np.mod(lo + np.arange((blocks - 1) * b_in + length), 2 * n)]
    return torch.from_numpy(table), torch.from_numpy(block).float(), b_in, b_out


def _along_last(x: torch.Tensor, axis: Axis) -> torch.Tensor:
    if x.shape[-1] != axis.in_len:
        raise ValueError(f"chroma resample: expected {axis.in_len} samples, got {x.shape[-1]}")
    table, block, b_in, _ = _plan(axis)
    windows = x.index_select(-1, table.to(x.device)).unfold(-1, block.shape[0], b_in)
    # overlapping windows copied once: matmul on the strided view is 3x slower
    out = torch.matmul(windows.contiguous(), block.to(device=x.device, dtype=x.dtype))
    return out.flatten(-2)[..., : axis.out_len]


def resample(x: torch.Tensor, rows: Axis, cols: Axis) -> torch.Tensor:
    """Resize the last two dims of the float tensor ``x`` (..., rows.in_len, cols.in_len)."""
    if rows.out_len * cols.in_len <= rows.in_len * cols.out_len:  # the smaller intermediate
        out = _along_last(_along_last(x.transpose(-1, -2), rows).transpose(-1, -2), cols)
    else:
        out = _along_last(_along_last(x, cols).transpose(-1, -2), rows).transpose(-1, -2)
    return out.contiguous()
