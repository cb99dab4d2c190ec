"""Small video clips built with PyAV, for the video tests and the README test."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_planes(i: int, w: int, h: int, bits: int = 8) -> list[np.ndarray]:
    """Smooth moving gradients plus noise: Y, U, V (4:2:0) at ``bits``."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:h, 0:w]
    peak = (1 << bits) - 1
    scale = 1 << (bits - 8)
    y = 16 + 100 * (1 + np.sin((xx + 3 * i) / 5.0 + yy / 7.0)) + rng.integers(0, 9, (h, w))
    y = np.clip(y * scale + rng.integers(0, scale, (h, w)), 0, peak)
    cy, cx = np.mgrid[0 : h // 2, 0 : w // 2]
    u = np.clip((128 + 40 * np.sin(cx / 4.0 + i)) * scale, 0, peak)
    v = np.clip((128 + 40 * np.cos(cy / 3.0 - i)) * scale, 0, peak)
    dtype = np.uint8 if bits == 8 else np.uint16
    return [p.astype(dtype) for p in (y, u, v)]


def fill(frame: av.VideoFrame, planes: list[np.ndarray]) -> None:
    for plane, data in zip(frame.planes, planes, strict=True):
        view = np.frombuffer(plane, dtype=data.dtype).reshape(plane.height, -1)
        view[:, : plane.width] = data


def make_clip(
    path: Path,
    frames: int = 6,
    size: tuple[int, int] = (48, 32),
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 1000),
    audio: bool = False,
    colorspace: int = 1,
    planes=None,
    codec: str = "libx264",
) -> Path:
    """A libx264 clip (``pts`` in ``time_base``; default 25 frames/s), optionally with AAC;
    ``codec="ffv1"`` for a lossless one (in a .mkv)."""
    w, h = size
    pts = pts if pts is not None else [i * 40 for i in range(frames)]
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        vs.codec_context.time_base = time_base
        vs.codec_context.colorspace = colorspace
        vs.codec_context.color_range = 1
        if codec == "libx264":
            vs.options = {"crf": "10", "preset": "ultrafast"}
        if audio:
            aus = out.add_stream("aac", rate=16000)
            aus.layout = "mono"
        bits = 10 if "10" in pix_fmt else 8
        for i, t in enumerate(pts):
            frame = av.VideoFrame(w, h, pix_fmt)
            fill(frame, planes(i) if planes else frame_planes(i, w, h, bits))
            frame.pts, frame.time_base = t, time_base
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if audio:
            seconds = (pts[-1] + 40) * float(time_base)
            tone = np.sin(np.arange(int(16000 * seconds)) * 0.05).astype(np.float32)[None] * 0.3
            for k in range(0, tone.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(tone[:, k : k + 1024]), format="fltp", layout="mono"
                )
                af.sample_rate, af.pts = 16000, k
                out.mux(aus.encode(af))
            out.mux(aus.encode(None))
    return path
