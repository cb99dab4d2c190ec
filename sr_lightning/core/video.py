"""Video super-resolution: decoded frames through an ``Upscaler`` in batches, re-encoded.

Three threads overlap, joined by small bounded queues: one decodes (PyAV, which releases
the GIL), this one runs the net on batches of frames, one encodes and muxes (the input's
audio and subtitle packets are copied as they are). Memory stays at a few batches.

Colour, without a round trip through RGB where none is needed:

* **Luma models** (``channels=1``) upscale the decoded Y plane itself; the chroma planes are
  upscaled by MATLAB bicubic (``imresize``) to the output's chroma size, as the ESPCN paper
  did for video. Y is the stream's own (its matrix and range), fed to the net as
  value / (255·2^(bits−8)) for limited range, which puts 8-bit video Y 16..235 where the
  papers' MATLAB Y lies, and value / (2^bits − 1) for full range.
* **RGB models** see R'G'B' converted with the matrix the stream declares (BT.601, BT.709,
  BT.2020; unspecified: BT.709 from 720 lines up, else BT.601) and its range, chroma first
  upscaled by bicubic to the luma size; their output goes back with the same matrix, chroma
  resized by bicubic to the output format's chroma size.

Values are clamped and rounded half up to the output format's levels (10-bit stays 10-bit).
"""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
from torch import nn

from sr_lightning.core.inference import PRECISIONS, Upscaler, free_memory_bytes
from sr_lightning.data.imresize import imresize
from sr_lightning.data.video import (
    EncodeOptions,
    Frame,
    VideoInfo,
    VideoWriter,
    check_encoder,
    read_frames,
)

log = logging.getLogger(__name__)

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
# the accuracy a faster precision must keep against float32 (Y PSNR of one frame, dB)
MIN_PSNR_DB = 45.0
_END = object()


def matrix_coefficients(colorspace: int, height: int) -> tuple[float, float]:
    """(Kr, Kb) of a stream's declared matrix; unspecified: BT.709 from 720 lines, else 601."""
    if colorspace in _MATRICES:
        return _MATRICES[colorspace]
    return _MATRICES[1] if height >= 720 else _MATRICES[6]


def level_scale(bits: int, full_range: bool) -> float:
    """Code value that maps to 1.0: 2^bits − 1 (full range) or 255·2^(bits−8) (limited)."""
    return float((1 << bits) - 1) if full_range else 255.0 * (1 << (bits - 8))


@dataclass(frozen=True)
class PlaneLayout:
    """Plane sizes and levels of a planar format at one frame size."""

    pix_fmt: str
    bits: int
    luma: tuple[int, int]  # (h, w)
    chroma: tuple[int, int] | None  # None for grey formats

    @classmethod
    def of(cls, pix_fmt: str, width: int, height: int) -> PlaneLayout:
        fmt = av.VideoFormat(pix_fmt)
        bits = max(c.bits for c in fmt.components)
        if len(fmt.components) < 3:
            return cls(pix_fmt, bits, (height, width), None)
        return cls(
            pix_fmt, bits, (height, width), (fmt.chroma_height(height), fmt.chroma_width(width))
        )


class FrameConverter:
    """Decoded planes -> net input, net output -> planes of the output format (torch, CPU)."""

    def __init__(self, info: VideoInfo, out_fmt: str, scale: int, channels: int) -> None:
        self.info = info
        self.channels = channels
        self.inp = PlaneLayout.of(info.pix_fmt, info.width, info.height)
        self.out = PlaneLayout.of(out_fmt, info.width * scale, info.height * scale)
        self.full = info.full_range
        self.in_scale = level_scale(self.inp.bits, self.full)
        self.out_scale = level_scale(self.out.bits, self.full)
        self.kr, self.kb = matrix_coefficients(info.colorspace, info.height)

    # -- planes <-> floats ---------------------------------------------------------------

    def _floats(self, frames: list[Frame], plane: int) -> torch.Tensor:
        stack = np.stack([f.planes[plane] for f in frames])[:, None]
        return torch.from_numpy(stack.astype(np.float32)) / self.in_scale

    def _levels(self, x: torch.Tensor) -> np.ndarray:
        peak = (1 << self.out.bits) - 1
        q = torch.floor(x * self.out_scale + 0.5).clamp_(0, peak)
        return q.to(torch.int32).numpy().astype(np.uint8 if self.out.bits <= 8 else np.uint16)

    def _offset(self) -> float:
        """Zero chroma and black luma in [0, 1] units of this range."""
        return 0.0 if self.full else 16.0 / 255.0

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
        if chroma.shape[-2:] != y.shape[-2:]:
            chroma = imresize(chroma, size=tuple(y.shape[-2:]))
        return self.yuv_to_rgb(y, chroma), None

    def output_planes(
        self, sr: torch.Tensor, chroma: torch.Tensor | None, scale: int
    ) -> list[tuple[np.ndarray, ...]]:
        """Net output (N, channels, H, W) (+ LR chroma for luma models) -> output planes."""
        if self.channels == 3:
            if self.inp.chroma is None:
                y, out_chroma = sr.mean(dim=1, keepdim=True), None
            else:
                y, out_chroma = self.rgb_to_yuv(sr)
                if self.out.chroma is not None and out_chroma.shape[-2:] != self.out.chroma:
                    out_chroma = imresize(out_chroma, size=self.out.chroma)
        else:
            y = sr
            out_chroma = None
            if chroma is not None and self.out.chroma is not None:
                out_chroma = imresize(chroma, size=self.out.chroma)
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


# -- running the net on batches of frames --------------------------------------------------


def run_net(upscaler: Upscaler, x: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) float frames -> (N, C, h·s, w·s) float32 on the CPU, unclamped.

    Whole frames go through in one forward pass when they fit in ``memory_fraction`` of the
    free memory (or ``tile=0``); otherwise each frame is tiled by ``Upscaler.upscale``.
    """
    n, _, h, w = x.shape
    with torch.inference_mode():
        if _whole_frames(upscaler, n, h, w):
            return upscaler.sr_model(x.to(upscaler.device)).cpu()
        outs = [
            torch.from_numpy(upscaler.upscale(f.permute(1, 2, 0).contiguous().numpy())).permute(
                2, 0, 1
            )
            for f in x
        ]
        return torch.stack(outs)


def _whole_frames(upscaler: Upscaler, n: int, h: int, w: int) -> bool:
    if upscaler.tile == 0:
        return True
    if upscaler.tile != "auto":
        return int(upscaler.tile) >= max(h, w)
    budget = upscaler.memory_fraction * free_memory_bytes(upscaler.device)
    return n * h * w * upscaler.bytes_per_window_pixel() <= budget


def y_psnr(a: torch.Tensor, b: torch.Tensor, channels: int) -> float:
    """PSNR (dB) between two net outputs on the luma they produce, clamped to [0, 1]."""
    a, b = a.clamp(0, 1), b.clamp(0, 1)
    if channels == 3:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        a, b = (a * w).sum(1), (b * w).sum(1)
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def fast_precision(device: torch.device) -> str | None:
    """The reduced precision worth trying here: bf16 on CPUs with native bf16, fp16 on CUDA."""
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu":
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return "bf16"
        except (AttributeError, RuntimeError):
            return None
    return None


def choose_precision(upscaler: Upscaler, sample: torch.Tensor) -> tuple[str, str]:
    """``precision=auto``: the reduced precision when it is faster on ``sample`` and its
    output keeps Y PSNR >= 45 dB against float32; else float32. Returns (name, why)."""
    candidate = fast_precision(upscaler.device)
    if candidate is None or not isinstance(upscaler.generator.net, nn.Module):
        upscaler.autocast_dtype = None
        return "fp32", "no faster precision for this net/device"

    def timed(dtype: torch.dtype | None) -> tuple[torch.Tensor, float]:
        upscaler.autocast_dtype = dtype
        run_net(upscaler, sample)  # warm-up: oneDNN builds its kernels on the first call
        best = math.inf
        for _ in range(2):  # the faster of two: the machine may be busy
            start = time.perf_counter()
            out = run_net(upscaler, sample)
            best = min(best, time.perf_counter() - start)
        return out, best

    ref, t32 = timed(None)
    out, tfast = timed(PRECISIONS[candidate])
    psnr = y_psnr(ref, out, upscaler.generator.channels)
    why = f"Y PSNR vs fp32 {psnr:.1f} dB, {t32 / max(tfast, 1e-9):.2f}x the fp32 speed"
    if psnr >= MIN_PSNR_DB and tfast < 0.9 * t32:
        upscaler.autocast_dtype = PRECISIONS[candidate]
        return candidate, why
    upscaler.autocast_dtype = None
    return "fp32", why


# -- the pipeline ------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoOptions:
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    batch_size: int = 4  # frames per forward pass
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 | keep (the Upscaler's own)
    queue_batches: int = 2  # batches each queue holds
    progress: bool = True
    progress_every: float = 5.0  # seconds between progress lines when stderr is not a terminal


@dataclass
class VideoResult:
    frames: int
    seconds: float
    precision: str


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END


def upscale_video(
    upscaler: Upscaler,
    info: VideoInfo,
    target: Path,
    options: VideoOptions = VideoOptions(),
    on_frames: Callable[[int], None] | None = None,
) -> VideoResult:
    """Upscale the video ``info`` describes into ``target`` (written in place: the caller
    gives a temporary path and renames it). Returns the frame count, time and precision."""
    if options.batch_size < 1:
        raise ValueError(f"video.batch_size must be >= 1, got {options.batch_size}")
    s = upscaler.scale
    out_fmt = check_encoder(options.encode.codec, options.encode.pix_fmt or info.pix_fmt)
    conv = FrameConverter(info, out_fmt, s, upscaler.generator.channels)
    writer = VideoWriter(target, info, info.width * s, info.height * s, options.encode)
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=options.batch_size * options.queue_batches)
    encoded: queue.Queue = queue.Queue(maxsize=options.batch_size * options.queue_batches)
    errors: list[BaseException] = []

    threads = [
        threading.Thread(
            target=_decode, args=(info, decoded, stop), name="sr-video-decode", daemon=True
        ),
        threading.Thread(
            target=_encode,
            args=(writer, encoded, stop, errors),
            name="sr-video-encode",
            daemon=True,
        ),
    ]
    for t in threads:
        t.start()
    precision = options.precision
    start = time.perf_counter()
    count = 0
    try:
        done = False
        while not done and not stop.is_set():
            batch: list[Frame] = []
            while len(batch) < options.batch_size:
                item = _get(decoded, stop)
                if item is _END:
                    done = True
                    break
                if isinstance(item, _Failed):
                    raise item.error
                batch.append(item)
            if not batch:
                break
            x, chroma = conv.net_input(batch)
            precision = _set_precision(upscaler, precision, x, info)
            sr = run_net(upscaler, x)
            for frame, planes in zip(batch, conv.output_planes(sr, chroma, s), strict=True):
                if not _put(encoded, (planes, frame.pts), stop):
                    break
            count += len(batch)
            if on_frames is not None:
                on_frames(len(batch))
        _put(encoded, _END, stop)
        threads[1].join()
        if errors:
            raise errors[0]
        if stop.is_set():
            raise RuntimeError(f"{info.path}: the video pipeline stopped early")
        frames = writer.close()
    except BaseException:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        writer.abort()
        raise
    threads[0].join(timeout=10)
    if frames != count:
        raise RuntimeError(f"{info.path}: encoded {frames} frames of {count}")
    return VideoResult(count, time.perf_counter() - start, precision)


def _decode(info: VideoInfo, decoded: queue.Queue, stop: threading.Event) -> None:
    """The decoding thread: frames into ``decoded``, then _END (or the error)."""
    try:
        for frame in read_frames(info):
            if not _put(decoded, frame, stop):
                return
        _put(decoded, _END, stop)
    except BaseException as err:
        _put(decoded, _Failed(err), stop)


def _encode(writer: VideoWriter, encoded: queue.Queue, stop: threading.Event, errors: list) -> None:
    """The encoding thread: (planes, pts) from ``encoded`` into the writer until _END."""
    try:
        while True:
            item = _get(encoded, stop)
            if item is _END:
                break
            planes, pts = item
            writer.write(planes, pts)
    except BaseException as err:
        errors.append(err)
        stop.set()


def _set_precision(upscaler: Upscaler, precision: str, x: torch.Tensor, info: VideoInfo) -> str:
    """Resolve ``auto`` on the first batch (once per video); apply an explicit precision."""
    if precision == "auto":
        precision, why = choose_precision(upscaler, x[:1])
        log.info("%s: precision=auto -> %s (%s)", info.path.name, precision, why)
    elif precision in PRECISIONS:
        if precision != "fp32" and not isinstance(upscaler.generator.net, nn.Module):
            raise ValueError(
                f"video.precision={precision} needs a PyTorch net; ONNX / TorchScript "
                "files run as exported (video.precision=fp32)"
            )
        upscaler.autocast_dtype = PRECISIONS[precision]
    return precision


class Progress:
    """frames/s and ETA: a tqdm bar on a terminal, else one line every few seconds."""

    def __init__(self, name: str, total: int, enabled: bool, every: float = 5.0) -> None:
        self.name, self.total, self.every = name, total, every
        self.done = 0
        self.start = self.last = time.perf_counter()
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total or None, desc=name, unit="frame", dynamic_ncols=True)

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total and rate > 0:
            eta = f", ETA {max(0.0, (self.total - self.done) / rate):.0f} s"
            of = f"/{self.total}"
        else:
            eta, of = "", ""
        return f"{self.name}: {self.done}{of} frames, {rate:.2f} frames/s{eta}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
