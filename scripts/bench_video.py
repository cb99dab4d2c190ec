"""Video SR frames/s: sr-upscale's video pipeline end to end against the net alone, one run.

Cases (issue #26): ESPCN x3 (luma, 5-3-3, 64-32) on 640x360 -> 1920x1080, and a 16-block
SRResNet x4 (RGB) on 320x180 -> 1280x720. For each, in the same process and on the same
decoded frames:

* end to end: decode (PyAV) + net + encode (libx264 veryfast crf 18, the defaults) with
  the pipeline's threads, through ``core.video.upscale_video``;
* the net alone: the same batches through ``run_net`` with the same precision and layout;
* the net in fp32 NCHW, the starting point of the issue;
* a bf16 / fp32 GEMM rate as this CPU's practical FLOP ceiling, and what it allows per frame.

The machine is shared: the table quotes ratios measured in one run, with the load average
before and after. Results go to docs/benchmarks.md between ``<!-- video:start -->`` and
``<!-- video:end -->`` (``--no-doc``: print only).

    python scripts/bench_video.py                 # ~3-6 minutes of CPU on the 2-core VM
    python scripts/bench_video.py --frames 8 2 --no-doc
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sr_lightning.core.inference import Generator, Upscaler  # noqa: E402
from sr_lightning.core.video import (  # noqa: E402
    FrameConverter,
    VideoOptions,
    choose_precision,
    run_net,
    upscale_video,
)
from sr_lightning.data.video import EncodeOptions, probe_video, read_frames  # noqa: E402
from sr_lightning.nets.espcn import ESPCN  # noqa: E402
from sr_lightning.nets.srresnet import SRResNet  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- video:start -->", "<!-- video:end -->"


def make_clip(path: Path, frames: int, width: int, height: int) -> Path:
    """Moving gradients with texture and noise (x264 must work for it), yuv420p, 25 fps."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}
        for i in range(frames):
            y = 110 + 60 * np.sin((xx + 4 * i) / 9.0) * np.cos(yy / 13.0)
            y += rng.normal(0, 6, y.shape)
            u = np.full((height // 2, width // 2), 128.0) + 20 * np.sin(i / 3.0)
            v = np.full((height // 2, width // 2), 128.0) - 20 * np.cos(i / 5.0)
            arr = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
            arr = np.clip(arr, 16, 235).astype(np.uint8).reshape(height * 3 // 2, width)
            frame = av.VideoFrame.from_ndarray(arr, format="yuv420p")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def conv_flops(net: nn.Module, channels: int, height: int, width: int) -> float:
    """FLOPs (2 per multiply-add) of the convolutions of one frame, counted with hooks."""
    total = 0

    def hook(module: nn.Conv2d, _inputs, output) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            net(torch.rand(1, channels, height, width))
    finally:
        for h in handles:
            h.remove()
    return float(total)


def gemm_rate(dtype: torch.dtype, n: int = 1536, repeats: int = 4) -> float:
    """GFLOP/s of a square matmul: the practical ceiling of conv layers on this CPU."""
    a = torch.rand(n, n).to(dtype)
    b = torch.rand(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def net_alone(up: Upscaler, batches: list[torch.Tensor]) -> float:
    run_net(up, batches[0][:1])  # warm-up
    start = time.perf_counter()
    frames = 0
    for x in batches:
        run_net(up, x)
        frames += x.shape[0]
    return frames / (time.perf_counter() - start)


def bench_case(name, net, scale, channels, size, frames, batch, folder) -> dict:
    width, height = size
    clip = make_clip(folder / f"{name.split()[0].lower()}.mp4", frames, width, height)
    info = probe_video(clip)
    gen = Generator(net.eval(), scale, channels, method=name)
    up = Upscaler(gen, channels_last=True, tile="auto")
    conv = FrameConverter(info, info.pix_fmt, scale, channels)
    decoded = list(read_frames(info))
    batches = [conv.net_input(decoded[i : i + batch])[0] for i in range(0, len(decoded), batch)]
    precision, why = choose_precision(up, batches[0][:1])
    print(f"{name}: precision auto -> {precision} ({why})", flush=True)
    options = VideoOptions(
        encode=EncodeOptions("libx264", crf=18, preset="veryfast"),
        batch_size=batch,
        precision=precision,
        progress=False,
    )
    result = upscale_video(up, info, folder / f"out_{clip.name}", options)
    e2e = result.frames / result.seconds
    print(f"{name}: end to end {e2e:.2f} frames/s", flush=True)
    alone = net_alone(up, batches)
    print(f"{name}: net alone {alone:.2f} frames/s", flush=True)
    base = Upscaler(gen.__class__(net.to(memory_format=torch.contiguous_format), scale, channels))
    base_frames = batches[: max(1, len(batches) // 2)]
    fp32 = net_alone(base, base_frames)
    print(f"{name}: net alone fp32 NCHW {fp32:.2f} frames/s", flush=True)
    flops = conv_flops(net, channels, height, width)
    return {"name": name, "in": f"{width}x{height}", "out": f"{width * scale}x{height * scale}",
            "frames": result.frames, "precision": precision, "e2e": e2e, "alone": alone,
            "fp32": fp32, "gflop": flops / 1e9}  # fmt: skip


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        START,
        "### Video (`sr-upscale input=clip.mp4`, `scripts/bench_video.py`)",
        "",
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores, torch "
        f"{meta['torch']}, {meta['threads']} threads, PyAV {meta['av']}); load average "
        f"{meta['load_before']} before, {meta['load_after']} after: **a shared machine**, so "
        "compare the columns of one row (same run, same frames), not the absolute rates. "
        "End to end = decode + net + libx264 `veryfast` crf 18 encode, overlapped (the "
        "defaults); net alone = the same batches of decoded frames through the same net, "
        "precision and layout (channels_last). GEMM ceiling = GFLOP per frame / the rate of a "
        f"1536² matmul in that precision, measured here ({meta['gemm_bf16']:.0f} GFLOP/s bf16, "
        f"{meta['gemm_fp32']:.0f} fp32).",
        "",
        "| case | frames | precision (auto) | end to end (frames/s) | net alone | end to end / "
        "net | net fp32 NCHW | GFLOP / frame | net GFLOP/s | GEMM ceiling (frames/s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = meta["gemm_bf16"] if r["precision"] == "bf16" else meta["gemm_fp32"]
        lines.append(
            f"| {r['name']} {r['in']} → {r['out']} | {r['frames']} | {r['precision']} | "
            f"{r['e2e']:.2f} | {r['alone']:.2f} | {r['e2e'] / r['alone']:.2f} | "
            f"{r['fp32']:.2f} | {r['gflop']:.1f} | {r['alone'] * r['gflop']:.0f} | "
            f"{rate / r['gflop']:.1f} |"
        )
    lines.append(END)
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else ""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    doc = (
        pattern.sub(lambda _m: text, doc)
        if pattern.search(doc)
        else doc.rstrip() + "\n\n" + text + "\n"
    )
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs=2, default=(24, 6),
                        help="frames of the ESPCN and SRResNet clips")  # fmt: skip
    parser.add_argument("--batch", type=int, default=4, help="frames per forward pass")
    parser.add_argument("--no-doc", action="store_true", help="print; leave benchmarks.md")
    args = parser.parse_args()
    load_before = "/".join(f"{x:.1f}" for x in os.getloadavg())
    torch.manual_seed(0)
    cases = [
        ("ESPCN x3", ESPCN(3, 1, widths=(64, 32), activation="relu"), 3, 1, (640, 360)),
        ("SRResNet x4", SRResNet(4, 3, num_blocks=16, width=64), 4, 3, (320, 180)),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for (name, net, scale, channels, size), frames in zip(cases, args.frames, strict=True):
            rows.append(bench_case(name, net, scale, channels, size, frames, args.batch, Path(tmp)))
    meta = {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "av": av.__version__,
        "load_before": load_before,
        "load_after": "/".join(f"{x:.1f}" for x in os.getloadavg()),
        "gemm_bf16": gemm_rate(torch.bfloat16),
        "gemm_fp32": gemm_rate(torch.float32),
    }
    try:
        with open("/proc/cpuinfo") as f:
            meta["cpu"] = next(
                ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    text = render(rows, meta)
    print(text)
    if not args.no_doc:
        write_doc(text)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
