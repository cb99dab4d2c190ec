"""Decoded video planes to the net's input and the net's output back to planes (torch, CPU).

Colour, without a round trip through RGB where none is needed:

* **Luma models** (``channels=1``) upscale the decoded Y plane itself; the chroma planes are
  upscaled by MATLAB bicubic to the output's chroma size where their samples sit
  (``data.chroma``: left-sited for MPEG-2 / H.264 / H.265, centred for JPEG and MPEG-1), as
  the ESPCN paper did for video. Y is the stream's own (its matrix and range), fed to the net
  as value / (255·2^(bits−8)) for limited range, which puts 8-bit video Y 16..235 where the
  papers' MATLAB Y lies, and value / (2^bits − 1) for full range.
* **RGB models** see R'G'B' converted with the matrix the stream declares (BT.601, BT.709,
  BT.2020; unspecified: BT.709 from 720 lines up, else BT.601) and its range, chroma first
  upscaled by bicubic to the luma size; their output goes back with the same matrix, chroma
  resized by bicubic to the output format's chroma size.

Values are clamped and rounded half up to the output format's levels (10-bit stays 10-bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import torch

from sr_lightning.data.chroma import CENTRED, LEFT, Siting, plane_axis, resample
from sr_lightning.data.video import Frame, VideoInfo

# (Kr, Kb) of the matrices a stream may declare (AVColorSpace values)
_MATRICES = {
    1: (0.2126, 0.0722),  # BT.709
    5: (0.299, 0.114),  # BT.470BG (BT.601 625 lines)
    6: (0.299, 0.114),  # SMPTE 170M (BT.601 525 lines)
    4: (0.30, 0.11),  # FCC
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
    10: (0.2627, 0.0593),  # BT.2020 constant luminance (treated as NCL)
}
_HALF = torch.tensor(0.5)
# codecs whose chroma is centred (JPEG family, MPEG-1); every other codec's default is left
_CENTRED_CODECS = frozenset({"mjpeg", "jpegls", "jpeg2000", "mpeg1video"})


def matrix_coefficients(colorspace: int, height: int) -> tuple[float, float]:
    """(Kr, Kb) of a stream's declared matrix; unspecified: BT.709 from 720 lines, else 601."""
    if colorspace in _MATRICES:
        return _MATRICES[colorspace]
    return _MATRICES[1] if height >= 720 else _MATRICES[6]


def level_scale(bits: int, full_range: bool) -> float:
    """Code value that maps to 1.0: 2^bits − 1 (full range) or 255·2^(bits−8) (limited)."""
    return float((1 << bits) - 1) if full_range else 255.0 * (1 << (bits - 8))


def chroma_siting(codec: str, pix_fmt: str = "") -> Siting:
    """Where a codec's chroma samples sit when the stream does not say otherwise.

    PyAV 18 does not expose a stream's declared chroma location, so this is the codec's
    default: centred for JPEG-family codecs (and ``yuvj*`` formats) and MPEG-1, left-sited
    (MPEG-2 / H.264 / H.265) for every other codec."""
    return CENTRED if codec in _CENTRED_CODECS or pix_fmt.startswith("yuvj") else LEFT


@dataclass(frozen=True)
class PlaneLayout:
    """Plane sizes, subsampling and levels of a planar format at one frame size."""

    pix_fmt: str
    bits: int
    luma: tuple[int, int]  # (h, w)
    chroma: tuple[int, int] | None  # None for grey formats
    sub: tuple[int, int] = (1, 1)  # chroma subsampling (vertical, horizontal): 2 for 4:2:0

    @classmethod
    def of(cls, pix_fmt: str, width: int, height: int) -> PlaneLayout:
        fmt = av.VideoFormat(pix_fmt)
        bits = max(c.bits for c in fmt.components)
        if len(fmt.components) < 3:
            return cls(pix_fmt, bits, (height, width), None)
        sub = (1024 // fmt.chroma_height(1024), 1024 // fmt.chroma_width(1024))
        chroma = (fmt.chroma_height(height), fmt.chroma_width(width))
        return cls(pix_fmt, bits, (height, width), chroma, sub)


@dataclass(frozen=True)
class Grid:
    """Where a plane's samples are: its size, subsampling against its luma, and siting."""

    size: tuple[int, int]  # (h, w)
    sub: tuple[int, int]  # (vertical, horizontal)
    siting: Siting

    def resize_to(self, other: Grid, scale: int, x: torch.Tensor) -> torch.Tensor:
        """``x`` on this grid resampled onto ``other``'s, in a picture ``scale`` times larger."""
        rows = plane_axis(self.size[0], other.size[0], scale, self.sub[0], other.sub[0],
                          self.siting.y, other.siting.y)  # fmt: skip
        cols = plane_axis(self.size[1], other.size[1], scale, self.sub[1], other.sub[1],
                          self.siting.x, other.siting.x)  # fmt: skip
        return resample(x, rows, cols)


class FrameConverter:
    """Decoded planes -> net input, net output -> planes of the output format (torch, CPU)."""

    def __init__(
        self,
        info: VideoInfo,
        out_fmt: str,
        scale: int,
        channels: int,
        out_codec: str = "libx264",
    ) -> None:
        self.info = info
        self.channels = channels
        self.scale = scale
        self.inp = PlaneLayout.of(info.pix_fmt, info.width, info.height)
        self.out = PlaneLayout.of(out_fmt, info.width * scale, info.height * scale)
        self.full = info.full_range
        self.in_scale = level_scale(self.inp.bits, self.full)
        self.out_scale = level_scale(self.out.bits, self.full)
        self.kr, self.kb = matrix_coefficients(info.colorspace, info.height)
        self.siting = (chroma_siting(info.codec, info.source_pix_fmt), chroma_siting(out_codec))

    def _grid(self, layout: PlaneLayout, side: int, full: bool = False) -> Grid:
        """The chroma grid of ``layout`` (input side 0, output 1), or its luma grid (``full``)."""
        if full or layout.chroma is None:
            return Grid(layout.luma, (1, 1), self.siting[side])
        return Grid(layout.chroma, layout.sub, self.siting[side])

    # -- planes <-> floats ---------------------------------------------------------------

    def _floats(self, frames: list[Frame], plane: int) -> torch.Tensor:
        stack = torch.from_numpy(np.stack([f.planes[plane] for f in frames])[:, None])
        return stack.to(torch.float32).div_(self.in_scale)

    def _levels(self, x: torch.Tensor) -> np.ndarray:
        """Floats in [0, 1] units -> code values, rounded half up and clamped.

        One pass for scale and offset, one for the clamp, then numpy's cast, which is 3x
        faster than torch's float -> uint8 on this CPU."""
        peak = (1 << self.out.bits) - 1
        q = torch.add(_HALF, x, alpha=self.out_scale).clamp_(0, peak)  # >= 0: truncation floors
        return q.numpy().astype(np.uint8 if self.out.bits <= 8 else np.uint16)

    # -- the net's input and output ------------------------------------------------------

    def net_input(self, frames: list[Frame]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, channels, h, w) for the net and, for luma models, (N, 2, hc, wc) chroma."""
        y = self._floats(frames, 0)
        has_chroma = self.inp.chroma is not None
        chroma = (
            torch.cat([self._floats(frames, 1), self._floats(frames, 2)], 1) if has_chroma else None
        )
        if self.channels == 1:
            return y, chroma
        if chroma is None:  # grey video through an RGB model: R = G = B
            return y.expand(-1, 3, -1, -1), None
        if self.inp.sub != (1, 1):
            chroma = self._grid(self.inp, 0).resize_to(
                self._grid(self.inp, 0, full=True), 1, chroma
            )
        return self.yuv_to_rgb(y, chroma), None

    def upscale_chroma(self, chroma: torch.Tensor) -> torch.Tensor:
        """A luma model's LR chroma (N, 2, hc, wc) -> the output format's chroma, by bicubic."""
        return self._grid(self.inp, 0).resize_to(self._grid(self.out, 1), self.scale, chroma)

    def output_planes(
        self, sr: torch.Tensor, chroma: torch.Tensor | None
    ) -> list[tuple[np.ndarray, ...]]:
        """Net output (N, channels, H, W) (+ LR chroma for luma models) -> each frame's planes."""
        out_chroma = None
        if self.channels == 3:
            if self.inp.chroma is None:
                y = sr.mean(dim=1, keepdim=True)
            else:
                y, out_chroma = self.rgb_to_yuv(sr)
                if self.out.chroma is not None and self.out.sub != (1, 1):
                    full = self._grid(self.out, 1, full=True)
                    out_chroma = full.resize_to(self._grid(self.out, 1), 1, out_chroma)
        else:
            y = sr
            if chroma is not None and self.out.chroma is not None:
                out_chroma = self.upscale_chroma(chroma)
        if self.out.chroma is not None and out_chroma is None:  # grey in, colour out
            neutral = 0.5 if self.full else 128.0 / 255.0
            out_chroma = torch.full((y.shape[0], 2, *self.out.chroma), neutral)
        planes = [self._levels(y[:, 0])]
        if self.out.chroma is not None:
            planes += [self._levels(out_chroma[:, 0]), self._levels(out_chroma[:, 1])]
        return [tuple(p[i] for p in planes) for i in range(y.shape[0])]

    # -- the stream's matrix -------------------------------------------------------------

    def _unrange(self, y: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.full:
            return y, c - 0.5 * (1 << self.inp.bits) / ((1 << self.inp.bits) - 1)
        return (y - 16 / 255) * (255 / 219), (c - 128 / 255) * (255 / 224)

    def yuv_to_rgb(self, y: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        """Y'CbCr planes in [0, 1] units (stream range) -> R'G'B' in [0, 1]."""
        luma, c = self._unrange(y, chroma)
        cb, cr = c[:, :1], c[:, 1:]
        kr, kb = self.kr, self.kb
        r = luma + 2 * (1 - kr) * cr
        b = luma + 2 * (1 - kb) * cb
        g = (luma - kr * r - kb * b) / (1 - kr - kb)
        return torch.cat([r, g, b], 1)

    def rgb_to_yuv(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """R'G'B' in [0, 1] -> (Y, CbCr) in [0, 1] units of the stream's range."""
        kr, kb = self.kr, self.kb
        r, g, b = rgb[:, :1], rgb[:, 1:2], rgb[:, 2:]
        luma = kr * r + (1 - kr - kb) * g + kb * b
        cb = (b - luma) / (2 * (1 - kb))
        cr = (r - luma) / (2 * (1 - kr))
        c = torch.cat([cb, cr], 1)
        if self.full:
            return luma, c + 0.5 * (1 << self.out.bits) / ((1 << self.out.bits) - 1)
        return luma * (219 / 255) + 16 / 255, c * (224 / 255) + 128 / 255
