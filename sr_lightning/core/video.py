"""Video super-resolution: decoded frames through an ``Upscaler`` in batches, re-encoded.

Threads joined by small bounded queues keep every core busy: one decodes (PyAV, which
releases the GIL), net workers run batches of frames, this thread hands the batches out and
passes their planes on in order, and one encodes and muxes (the input's audio and subtitle
packets are copied as they are). Memory stays at a few batches.

On a CPU the net runs in one worker per intra-op thread, each worker single-threaded on its
own batch, rather than one batch split across the threads: the threads of a split layer wait
for each other at its end, so whenever the encoder or decoder took one core the other core
idled (or spun) until that layer's share on the busy core was done. Independent workers never
wait for each other, so the time decode and encode take comes out of the net's share of the
cores instead of leaving a core idle. Side by side costs cache (ESPCN x3 on the 2-core dev VM:
115 CPU-ms a frame of net against 72 split), yet end to end came out ahead in every interleaved
comparison, quiet or loaded (docs/benchmarks.md, "Video", has the numbers and core budget).

Planes to net input and back, colour and chroma siting: :mod:`sr_lightning.core.video_frames`.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sr_lightning.core.inference import PRECISIONS, Upscaler, free_memory_bytes
from sr_lightning.core.video_frames import FrameConverter
from sr_lightning.data.video import (
    EncodeOptions,
    Frame,
    VideoInfo,
    VideoWriter,
    check_encoder,
    read_frames,
)

log = logging.getLogger(__name__)

# the accuracy a faster precision must keep against float32 (Y PSNR of one frame, dB)
MIN_PSNR_DB = 45.0
# at most this many net workers (each with its share of the intra-op threads)
MAX_NET_WORKERS = 4
_END = object()


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


class NetWorkers:
    """Threads that run batches side by side, each with its share of torch's intra-op threads.

    One worker runs each batch in the calling thread, as a plain loop would."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.threads = torch.get_num_threads()
        self.pool = None
        if count > 1:
            self.pool = ThreadPoolExecutor(
                count,
                thread_name_prefix="sr-video-net",
                initializer=torch.set_num_threads,
                initargs=(max(1, self.threads // count),),
            )

    def submit(self, fn: Callable[..., object], *args: object) -> Future:
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        done: Future = Future()
        done.set_result(fn(*args))
        return done

    def __enter__(self) -> NetWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(
                self.threads
            )  # the workers' setting is the default of new threads


def net_workers(upscaler: Upscaler, x: torch.Tensor, batch_size: int) -> int:
    """Batches to run side by side: on a CPU, one per intra-op thread (at most
    ``MAX_NET_WORKERS``) when that many whole batches fit in memory; elsewhere one."""
    if upscaler.device.type != "cpu" or not isinstance(upscaler.generator.net, nn.Module):
        return 1
    _, _, h, w = x.shape
    for count in range(min(torch.get_num_threads(), MAX_NET_WORKERS), 1, -1):
        if _whole_frames(upscaler, count * batch_size, h, w):
            return count
    return 1


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
    codec = options.encode.codec
    out_fmt = check_encoder(codec, options.encode.pix_fmt or info.pix_fmt)
    conv = FrameConverter(info, out_fmt, s, upscaler.generator.channels, codec)
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
    start = time.perf_counter()
    try:
        batches = _batches(decoded, options.batch_size, stop)
        count, precision = _run_batches(upscaler, conv, options, batches, encoded, stop, on_frames)
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


def _batches(decoded: queue.Queue, size: int, stop: threading.Event) -> Iterator[list[Frame]]:
    """Decoded frames in batches of ``size`` (the last may be shorter); a decoding error raises."""
    batch: list[Frame] = []
    while not stop.is_set():
        item = _get(decoded, stop)
        if item is _END:
            break
        if isinstance(item, _Failed):
            raise item.error
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch and not stop.is_set():
        yield batch


def _run_batches(
    upscaler: Upscaler,
    conv: FrameConverter,
    options: VideoOptions,
    batches: Iterator[list[Frame]],
    encoded: queue.Queue,
    stop: threading.Event,
    on_frames: Callable[[int], None] | None,
) -> tuple[int, str]:
    """Each batch through the net workers; its frames' planes into ``encoded`` in order.
    Returns the frames passed on and the precision (``auto`` resolved on the first batch)."""
    first = next(batches, None)
    if first is None:
        return 0, options.precision
    x, _ = conv.net_input(first)
    precision = _set_precision(upscaler, options.precision, x, conv.info)
    workers = net_workers(upscaler, x, options.batch_size)
    count = 0
    pending: deque[tuple[list[Frame], Future]] = deque()
    with NetWorkers(workers) as pool:
        for batch in itertools.chain([first], batches):
            pending.append((batch, pool.submit(_upscale_batch, upscaler, conv, batch)))
            if len(pending) > workers:  # every worker has a batch; wait for the oldest
                count += _pass_on(*pending.popleft(), encoded, stop, on_frames)
        while pending:
            count += _pass_on(*pending.popleft(), encoded, stop, on_frames)
    return count, precision


def _upscale_batch(
    upscaler: Upscaler, conv: FrameConverter, batch: list[Frame]
) -> list[tuple[np.ndarray, ...]]:
    """A net worker's job: one batch of decoded frames -> the output planes of each frame."""
    x, chroma = conv.net_input(batch)
    return conv.output_planes(run_net(upscaler, x), chroma)


def _pass_on(
    batch: list[Frame],
    future: Future,
    encoded: queue.Queue,
    stop: threading.Event,
    on_frames: Callable[[int], None] | None,
) -> int:
    """A finished batch's frames to the encoder, in order; returns how many."""
    for frame, planes in zip(batch, future.result(), strict=True):
        if not _put(encoded, (planes, frame.pts), stop):
            return 0
    if on_frames is not None:
        on_frames(len(batch))
    return len(batch)


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
