"""Tiled upscaling of images of any size with a trained generator; no Lightning here.

``Upscaler`` turns an LR image (H, W, C uint8 / uint16 / float) into its SR image
(H·s, W·s, C) of the same dtype, one tile at a time:

* **Tiles keep their centre.** The LR image is cut into ``tile`` × ``tile`` cores; each core
  is run with ``tile_overlap`` extra LR pixels of context on every side (clipped at the image
  border) and only the core's part of the output is kept. When the overlap covers the
  net's receptive-field radius, every kept pixel sees exactly the input it sees in a
  whole-image run, so tiled and untiled outputs agree to float rounding (within one
  grey level after rounding). ``tile_overlap="auto"`` measures that radius.
* **Bounded memory.** Windows all have one size (those at the border are shifted inward,
  not shrunk), so they are batched, and the output is written tile by tile into a buffer
  of the output dtype: the peak is the output image plus one batch of activations.
* **Colour.** RGB models see RGB; luma models (``channels=1``) upscale Y with the net and
  CbCr with bicubic (MATLAB ``rgb2ycbcr``/``ycbcr2rgb`` in float), the papers' way; grey
  images go through as their own luma (or as R=G=B for RGB models, averaged back); alpha
  is upscaled with bicubic.
* **Pre-upsampling nets** (SRCNN, VDSR) are tiled in the LR domain: each LR window is
  bicubic-upscaled (MATLAB ``imresize``) and then run through the net, so the overlap has to
  cover the bicubic kernel and its mirrored border too; the measured radius includes it.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from sr_lightning.common.color import rgb_to_ycbcr, ycbcr_to_rgb
from sr_lightning.data.degradation import bicubic_upscale

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

# LR pixels of context that bicubic upscaling (Keys kernel, support 4) needs on each side.
BICUBIC_RADIUS = 2
# Output changes smaller than this (in [0, 1] units, 1/400 of an 8-bit level) do not count
# as "inside the receptive field" (nor, for nets whose whole response is weak, changes below
# _PROBE_RELATIVE of the largest); it keeps float noise of Winograd-style convs out.
_PROBE_THRESHOLD = 1e-5
_PROBE_RELATIVE = 1e-4
_PROBE_STRIP = 8
_MIN_AUTO_TILE = 32
# On CPUs bigger windows are slower per pixel (SRResNet x4, one thread: 580, 680 and 845 µs
# per LR pixel at 64², 128² and 256²; fresh pages for huge activations cost system time), so
# `tile=auto` there stops at this core size, which also keeps a window's memory near 1 GB.
_CPU_MAX_AUTO_TILE = 256


# -- the generator ------------------------------------------------------------------------


@dataclass(frozen=True)
class Generator:
    """A net with what inference needs to know about it.

    ``net`` maps (N, channels, h, w) float images in [0, 1] to SR images: (N, channels,
    h·scale, w·scale) for ``upsampling="post"``; for ``"pre"`` it takes the bicubic-upsampled
    image and keeps its size. It may be an ``nn.Module``, a TorchScript module or an ONNX
    runner (anything callable on tensors).
    """

    net: Callable[[torch.Tensor], torch.Tensor]
    scale: int
    channels: int
    upsampling: str = "post"
    method: str = "unknown"
    # where it came from and what it is, for reports and exports (see core/model_files.py)
    spec: dict | None = field(default=None, compare=False)  # registered net name + kwargs
    display: dict | None = field(default=None, compare=False)
    scales: tuple[int, ...] = ()  # a multi-scale model (VDSR) runs at each of these
    detected: dict | None = field(default=None, compare=False)  # spandrel's detection
    path: str | None = None

    def __post_init__(self) -> None:
        if self.upsampling not in ("pre", "post"):
            raise ValueError(f"upsampling must be 'pre' or 'post', got {self.upsampling!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (luma) or 3 (RGB), got {self.channels}")
        if int(self.scale) != self.scale or self.scale < 1:
            raise ValueError(f"scale must be a positive integer, got {self.scale!r}")

    @property
    def pre_upsampling(self) -> bool:
        return self.upsampling == "pre"

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        """LR in [0, 1] -> SR: the net, on the bicubic upscale of the LR for "pre" nets."""
        return self.net(bicubic_upscale(lr, self.scale) if self.pre_upsampling else lr)

    def at_scale(self, scale: int) -> Generator:
        """The same net run at another scale it was trained for (multi-scale VDSR)."""
        return replace(self, scale=int(scale))

    @property
    def params(self) -> int:
        """Parameter count of a PyTorch net (0 for ONNX / TorchScript runners)."""
        if not isinstance(self.net, nn.Module):
            return 0
        return sum(p.numel() for p in self.net.parameters())


# -- tiling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One axis of a tile: the core [core0, core1) kept, read from the window [win0, win1)."""

    core0: int
    core1: int
    win0: int
    win1: int


def plan_axis(length: int, tile: int, overlap: int) -> list[Span]:
    """Split ``length`` pixels into cores of at most ``tile`` with ``overlap`` context each side.

    Cores are near-equal (sizes differ by at most one), and every window has the same size,
    min(length, largest core + 2·overlap): windows at the border are shifted inward rather
    than cut, so all tiles of an image can be batched. Each window holds its core plus at
    least ``overlap`` pixels on every side that is not the image border.
    """
    if tile <= 0 or tile >= length:
        return [Span(0, length, 0, length)]
    n = math.ceil(length / tile)
    bounds = [round(i * length / n) for i in range(n + 1)]
    size = min(length, max(b - a for a, b in itertools.pairwise(bounds)) + 2 * overlap)
    spans = []
    for core0, core1 in itertools.pairwise(bounds):
        win0 = min(max(core0 - overlap, 0), length - size)
        spans.append(Span(core0, core1, win0, win0 + size))
    return spans


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering an image; see ``plan_axis``."""
    return [
        Tile(r, c)
        for r in plan_axis(height, tile, overlap)
        for c in plan_axis(width, tile, overlap)
    ]


# -- memory -------------------------------------------------------------------------------


def free_memory_bytes(device: torch.device) -> int:
    """Memory a new allocation can use now: free CUDA memory, or the host's MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


# -- the upscaler -------------------------------------------------------------------------


class Upscaler:
    """Upscale whole images with a ``Generator``, tiled, batched, at bounded memory.

    Args:
        generator: the net and its scale / channels / upsampling.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when available).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; blending stays float32).
        channels_last: run the net on channels-last tensors (often faster on GPUs and oneDNN).
        tile: LR core size; 0 = the whole image at once; ``"auto"`` = the largest that fits
            in a share of the free memory (the whole image when it fits).
        tile_overlap: LR context on each side of a core; ``"auto"`` = the measured
            receptive-field radius (then tiled == untiled within one level after rounding).
        batch_size: windows per forward pass (all windows of an image have one size).
        memory_fraction: share of the free memory ``tile="auto"`` may plan for.
        progress: show a tqdm bar over tiles when an image has more than one.
        compile: ``torch.compile`` the net (an ``nn.Module`` only).
    """

    def __init__(
        self,
        generator: Generator,
        *,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        tile: int | str = 0,
        tile_overlap: int | str = "auto",
        batch_size: int = 1,
        memory_fraction: float = 0.5,
        progress: bool = False,
        compile: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if not (tile == "auto" or (isinstance(tile, int) and tile >= 0)):
            raise ValueError(
                f"tile must be an integer >= 0 (0 = whole image) or 'auto', got {tile!r}"
            )
        if not (tile_overlap == "auto" or (isinstance(tile_overlap, int) and tile_overlap >= 0)):
            raise ValueError(
                f"tile_overlap must be an integer >= 0 or 'auto', got {tile_overlap!r}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.generator = generator
        self.scale = int(generator.scale)
        self.device = resolve_device(device)
        self.autocast_dtype = PRECISIONS[precision]
        if self.autocast_dtype is not None and not isinstance(generator.net, nn.Module):
            raise ValueError(
                f"precision={precision} needs a PyTorch net; ONNX / TorchScript files run in "
                "the precision they were exported in (use precision=fp32)"
            )
        self.channels_last = channels_last
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.batch_size = int(batch_size)
        self.memory_fraction = float(memory_fraction)
        if not 0 < self.memory_fraction <= 1:
            raise ValueError(
                f"memory_fraction={memory_fraction}: the share of the free memory tiles may use, "
                "in (0, 1]; e.g. memory_fraction=0.5"
            )
        self.progress = progress
        self._radius: int | None = None
        self.last_tiles: list[Tile] = []  # the tiles of the latest image (for logs and tests)
        self._bytes_per_pixel: float | None = None

        net = generator.net
        if isinstance(net, nn.Module):
            net = net.eval().to(self.device)  # in place: the caller's net is switched to eval
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            if compile:
                if isinstance(net, torch.jit.ScriptModule):
                    raise ValueError("compile=true needs an eager PyTorch net, not TorchScript")
                net = torch.compile(net)
        elif compile:
            raise ValueError("compile=true needs a PyTorch net, not an ONNX / TorchScript file")
        self._net = net

    # -- the model function on LR windows ---------------------------------------------------

    def sr_model(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, channels, h, w) LR in [0, 1] -> (N, channels, h·s, w·s) SR, float32, unclamped."""
        x = bicubic_upscale(lr, self.scale) if self.generator.pre_upsampling else lr
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            out = self._net(x)
        else:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                out = self._net(x)
        expected = (lr.shape[0], lr.shape[1], lr.shape[2] * self.scale, lr.shape[3] * self.scale)
        if tuple(out.shape) != expected:
            raise RuntimeError(
                f"the net returned {tuple(out.shape)} for an input of {tuple(x.shape)}; expected "
                f"{expected} (scale {self.scale}, upsampling {self.generator.upsampling!r}). "
                "Is the scale of the weights/metadata right?"
            )
        return out.float().contiguous()

    def upscale_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) LR windows in [0, 1], C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA."""
        c = windows.shape[1]
        colour, alpha = (windows[:, :-1], windows[:, -1:]) if c in (2, 4) else (windows, None)
        if self.generator.channels == 3:
            if colour.shape[1] == 1:
                sr = self.sr_model(colour.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)
            else:
                sr = self.sr_model(colour)
        elif colour.shape[1] == 1:
            sr = self.sr_model(colour)
        else:
            ycc = rgb_to_ycbcr(colour)
            y = self.sr_model(ycc[:, :1])
            cbcr = bicubic_upscale(ycc[:, 1:], self.scale)
            sr = ycbcr_to_rgb(torch.cat([y, cbcr], dim=1))
        if alpha is not None:
            sr = torch.cat([sr, bicubic_upscale(alpha, self.scale)], dim=1)
        return sr

    # -- tile planning ----------------------------------------------------------------------

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context one output pixel depends on (measured once, then cached)."""
        if self._radius is None:
            with torch.inference_mode():
                self._radius = measure_receptive_radius(
                    self.sr_model, self.generator.channels, self.scale, self.device
                )
            if self.generator.pre_upsampling:  # the bicubic kernel's reach, whatever the net
                self._radius = max(self._radius, BICUBIC_RADIUS)
            log.info("receptive-field radius: %d LR pixels", self._radius)
        return self._radius

    def overlap_for(self, image_channels: int) -> int:
        if self.tile_overlap != "auto":
            return int(self.tile_overlap)
        needs_bicubic = image_channels in (2, 4) or (
            self.generator.channels == 1 and image_channels >= 3
        )
        return max(self.receptive_radius, BICUBIC_RADIUS if needs_bicubic else 0)

    def bytes_per_window_pixel(self) -> float:
        """Peak activation bytes per LR window pixel, from the largest layer output of a probe."""
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = estimate_bytes_per_pixel(self)
        return self._bytes_per_pixel

    def tile_for(self, height: int, width: int, channels: int) -> tuple[int, int]:
        """(tile, overlap) for an image: ``tile`` 0 when the whole image is one window."""
        if self.tile == 0:
            return 0, 0
        if self.tile != "auto":
            tile = int(self.tile)
            return (0, 0) if tile >= max(height, width) else (tile, self.overlap_for(channels))
        budget = self.memory_fraction * free_memory_bytes(self.device)
        if self.device.type == "cpu":  # the output buffer is host memory not yet touched
            budget -= height * width * self.scale**2 * channels * 2
        per_pixel = self.bytes_per_window_pixel()
        cap = _CPU_MAX_AUTO_TILE if self.device.type == "cpu" else None
        if height * width * per_pixel <= budget and (cap is None or max(height, width) <= cap):
            return 0, 0
        overlap = self.overlap_for(channels)
        side = math.isqrt(max(1, int(budget / (self.batch_size * per_pixel))))
        tile = max(_MIN_AUTO_TILE, side - 2 * overlap)
        if cap is not None:
            tile = min(tile, cap)
        return (0, 0) if tile >= max(height, width) else (tile, overlap)

    # -- whole images -----------------------------------------------------------------------

    def upscale(self, image: np.ndarray | torch.Tensor) -> np.ndarray:
        """Upscale one image, (H, W) or (H, W, C) with C in 1..4, uint8 / uint16 / float.

        Returns (H·s, W·s[, C]) of the input's dtype: integers are clamped and rounded (half
        up); float inputs (in [0, 1]) give the unclamped float32 SR image.
        """
        array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        squeeze = array.ndim == 2
        if squeeze:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape:
            raise ValueError(
                f"expected an image shaped (H, W) or (H, W, C) with C in 1..4, got {array.shape}"
            )
        peak = _peak_value(array.dtype)
        h, w, c = array.shape
        s = self.scale
        out_dtype = array.dtype if peak is not None else np.float32
        out = np.empty((h * s, w * s, c), dtype=out_dtype)
        tile, overlap = self.tile_for(h, w, c)
        tiles = plan_tiles(h, w, tile, overlap)
        with torch.inference_mode(), _progress(len(tiles), self.progress) as bar:
            for batch in _chunks(tiles, self.batch_size):
                windows = torch.stack([_window(array, t, peak) for t in batch]).to(
                    self.device, non_blocking=True
                )
                sr = self.upscale_windows(windows)
                for t, tile_sr in zip(batch, sr, strict=True):
                    core = tile_sr[
                        :,
                        (t.rows.core0 - t.rows.win0) * s : (t.rows.core1 - t.rows.win0) * s,
                        (t.cols.core0 - t.cols.win0) * s : (t.cols.core1 - t.cols.win0) * s,
                    ]
                    out[
                        t.rows.core0 * s : t.rows.core1 * s, t.cols.core0 * s : t.cols.core1 * s
                    ] = _to_output(core, peak, out_dtype)
                bar.update(len(batch))
        self.last_tiles = tiles
        return out[:, :, 0] if squeeze else out

    def upscale_tensor(self, lr: torch.Tensor) -> torch.Tensor:
        """Float (C, H, W) or (N, C, H, W) in [0, 1] -> float32 SR of the same layout, on CPU."""
        batched = lr.dim() == 4
        images = lr if batched else lr.unsqueeze(0)
        outs = [
            torch.from_numpy(self.upscale(x.detach().float().cpu().permute(1, 2, 0).numpy()))
            .permute(2, 0, 1)
            .contiguous()
            for x in images
        ]
        return torch.stack(outs) if batched else outs[0]


# -- helpers ------------------------------------------------------------------------------


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available; a CUDA device without CUDA is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} but CUDA is not available here; use device=cpu")
    return dev


def measure_receptive_radius(
    fn: Callable[[torch.Tensor], torch.Tensor],
    channels: int,
    scale: int,
    device: torch.device | str = "cpu",
    start: int = 48,
    limit: int = 2048,
) -> int:
    """LR radius that an output pixel depends on, found by perturbing one input row/column.

    A strip of random LR pixels (long along one axis) is run twice, once with its middle
    row raised by 0.5; output rows that move by more than 1e-5 lie inside the receptive
    field. Done for both axes (rows and columns); the strip doubles until the change stops
    short of its ends. Works for any callable (PyTorch, TorchScript, ONNX runners).
    """
    gen = torch.Generator().manual_seed(0)
    radius = 0
    for axis in (2, 3):
        length = start
        while True:
            shape = [1, channels, _PROBE_STRIP, _PROBE_STRIP]
            shape[axis] = length
            x = (0.25 + 0.5 * torch.rand(shape, generator=gen)).to(device)
            centre = length // 2
            bumped = x.clone()
            bumped.narrow(axis, centre, 1).add_(0.5)
            diff = (fn(bumped) - fn(x)).abs().float().cpu()
            other = tuple(d for d in range(4) if d != axis)
            profile = diff.amax(dim=other)
            # relative for barely trained nets whose whole response is below the absolute one
            threshold = min(_PROBE_THRESHOLD, _PROBE_RELATIVE * float(profile.max()))
            moved = torch.nonzero(profile > threshold).flatten()
            if moved.numel() == 0:
                axis_radius = 0
                break
            lr_pos = torch.div(moved, scale, rounding_mode="floor")
            axis_radius = int((lr_pos - centre).abs().max())
            if axis_radius < centre - 1:
                break
            if length >= limit:
                raise RuntimeError(
                    f"the receptive field exceeds {limit} LR pixels; set tile_overlap explicitly"
                )
            length *= 2
        radius = max(radius, axis_radius)
    return radius


def estimate_bytes_per_pixel(upscaler: Upscaler, probe: int = 32) -> float:
    """Peak bytes per LR window pixel: 3 × the largest layer output (input, output, skip).

    Measured with forward hooks on a small probe for ``nn.Module`` nets; other nets
    (ONNX, TorchScript) are assumed as wide as these papers' nets: 64 float32 maps at HR size.
    """
    g = upscaler.generator
    widest = 0

    def hook(_module, _inputs, output) -> None:
        nonlocal widest
        if isinstance(output, torch.Tensor):
            widest = max(widest, output.numel() * output.element_size())

    net = g.net
    if isinstance(net, nn.Module) and not isinstance(net, torch.jit.ScriptModule):
        handles = [m.register_forward_hook(hook) for m in net.modules()]
        try:
            with torch.inference_mode():
                x = torch.rand(1, g.channels, probe, probe, device=upscaler.device)
                upscaler.sr_model(x)
        finally:
            for h in handles:
                h.remove()
        per_pixel = widest / probe**2
    else:
        per_pixel = 64 * 4 * upscaler.scale**2
    # + the window itself, its bicubic upscale and the float32 SR output
    per_pixel += (4 + 8) * 4 * upscaler.scale**2
    return 3.0 * per_pixel


def _peak_value(dtype: np.dtype) -> float | None:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return None
    raise TypeError(f"unsupported image dtype {dtype}; expected uint8, uint16 or float")


def _window(array: np.ndarray, t: Tile, peak: float | None) -> torch.Tensor:
    """One LR window as float32 (C, h, w) in [0, 1]."""
    part = array[t.rows.win0 : t.rows.win1, t.cols.win0 : t.cols.win1].astype(np.float32)
    if peak is not None:
        part /= peak
    return torch.from_numpy(part).permute(2, 0, 1)


def _to_output(sr: torch.Tensor, peak: float | None, dtype: np.dtype) -> np.ndarray:
    """(C, h, w) float SR -> (h, w, C) array of the output dtype (rounded half up)."""
    if peak is not None:
        sr = torch.floor(sr.clamp(0.0, 1.0) * peak + 0.5)
    return sr.permute(1, 2, 0).cpu().numpy().astype(dtype, copy=False)


def _chunks(items: Sequence[Tile], size: int) -> Iterator[Sequence[Tile]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled or total <= 1:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc="tiles", unit="tile", leave=False, dynamic_ncols=True, disable=None
    )
