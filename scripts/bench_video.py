"""Video SR frames/s: sr-upscale's video pipeline end to end against the net alone, one run.

Cases (issue #26): ESPCN x3 (luma, 5-3-3, 64-32) on 640x360 -> 1920x1080, and a 16-block
SRResNet x4 (RGB) on 320x180 -> 1280x720. For each, in one process, on the same decoded
frames, interleaved over ``--rounds`` rounds (each number is the best round):

* end to end: decode (PyAV) + net + encode (libx264 veryfast crf 18, the defaults) through
  ``core.video.upscale_video``; with ``--baseline REV`` also REV's pipeline (its
  ``core/video.py``, loaded from git) on the same frames, the "before";
* the net alone: the same batches through ``run_net`` with the same precision and layout, two
  ways: one batch at a time on all intra-op threads, and batches side by side in
  single-threaded workers (what the pipeline does); the ratio is taken against the faster;
* the net in fp32 NCHW, the starting point of the issue;
* the core budget of the ESPCN case: CPU time per frame of each stage alone on the same
  frames (decode, planes to floats, the net on one thread, chroma, levels, encode at three
  presets), what their sum allows on the machine's cores, and the bound that puts on the ratio;
* a bf16 / fp32 GEMM rate as this CPU's practical FLOP ceiling, and what it allows per frame.

The machine is shared: the table quotes ratios measured in one run, with the load average
before and after. Results go to docs/benchmarks.md between ``<!-- video:start -->`` and
``<!-- video:end -->`` (``--no-doc``: print only).

    python scripts/bench_video.py                  # ~5-10 minutes on the 2-core VM
    python scripts/bench_video.py --baseline 2923d29 --no-doc
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sr_lightning.core import video  # noqa: E402
from sr_lightning.core.inference import PRECISIONS, Generator, Upscaler  # noqa: E402
from sr_lightning.core.video import NetWorkers, choose_precision, run_net  # noqa: E402
from sr_lightning.core.video_frames import FrameConverter  # noqa: E402
from sr_lightning.data.video import (  # noqa: E402
    EncodeOptions,
    VideoWriter,
    probe_video,
    read_frames,
)
from sr_lightning.nets.espcn import ESPCN  # noqa: E402
from sr_lightning.nets.srresnet import SRResNet  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- video:start -->", "<!-- video:end -->"
GPU_START, GPU_END = "<!-- video-gpu:start -->", "<!-- video-gpu:end -->"
GPU_GOAL_FPS = 30
PRESET = "veryfast"  # sr-upscale's default for libx264
BUDGET_PRESETS = ("veryfast", "superfast", "ultrafast")


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


def gemm_rate(dtype: torch.dtype, device: str = "cpu", n: int = 1536, repeats: int = 4) -> float:
    """GFLOP/s of a square matmul: the practical ceiling of conv layers on this device."""
    a = torch.rand(n, n, device=device).to(dtype)
    b = torch.rand(n, n, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def net_alone(up: Upscaler, batches: list[torch.Tensor]) -> float:
    """Frames/s of one batch at a time on all of torch's intra-op threads."""
    run_net(up, batches[0][:1])  # warm-up
    start = time.perf_counter()
    for x in batches:
        run_net(up, x)
    return sum(x.shape[0] for x in batches) / (time.perf_counter() - start)


def net_alone_workers(up: Upscaler, batches: list[torch.Tensor]) -> float:
    """Frames/s of batches side by side in single-threaded workers, as the pipeline runs them."""
    count = video.net_workers(up, batches[0], batches[0].shape[0])
    with NetWorkers(count) as pool:
        [f.result() for f in [pool.submit(run_net, up, x[:1]) for x in batches[:count]]]
        start = time.perf_counter()
        [f.result() for f in [pool.submit(run_net, up, x) for x in batches]]
        seconds = time.perf_counter() - start
    return sum(x.shape[0] for x in batches) / seconds


def load_pipeline(rev: str) -> ModuleType:
    """``sr_lightning/core/video.py`` as it was at git revision ``rev``, as a module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:sr_lightning/core/video.py"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / f"video_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"video_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def end_to_end(pipeline: ModuleType, up, info, target: Path, batch: int, precision: str) -> float:
    options = pipeline.VideoOptions(
        encode=EncodeOptions("libx264", crf=18, preset=PRESET),
        batch_size=batch,
        precision=precision,
        progress=False,
    )
    result = pipeline.upscale_video(up, info, target, options)
    target.unlink()
    return result.frames / result.seconds


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def cpu_ms(fn, frames: int, repeats: int = 3) -> float:
    """CPU time (all of this process's threads) per frame of ``fn``, the least of repeats."""
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return 1000 * best / frames


def stage_budget(up: Upscaler, info, precision: str, batch: int, folder: Path) -> list[tuple]:
    """(stage, CPU-ms per frame) of each stage but the net alone on the clip's frames, the
    conversions on one thread as the pipeline's workers run them."""
    decoded = list(read_frames(info))
    n = len(decoded)
    conv = FrameConverter(info, info.pix_fmt, up.scale, up.generator.channels)
    groups = [decoded[i : i + batch] for i in range(0, n, batch)]
    inputs = [conv.net_input(g) for g in groups]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [("decode (PyAV, its threads) and plane copies", cpu_ms(lambda: list(read_frames(info)), n))]  # fmt: skip
        rows.append(("planes to floats (Y, chroma)", cpu_ms(lambda: [conv.net_input(g) for g in groups], n)))  # fmt: skip
        run_net(up, inputs[0][0][:1])
        outs = [run_net(up, x) for x, _ in inputs]
        chroma = cpu_ms(lambda: [conv.upscale_chroma(c) for _, c in inputs], n)
        rows.append(("chroma bicubic to 1080p (sited)", chroma))
        both = cpu_ms(lambda: [conv.output_planes(o, c) for o, (_, c) in zip(outs, inputs, strict=True)], n)  # fmt: skip
        rows.append(("levels: floats to uint8 planes", max(0.0, both - chroma)))
        planes = [
            p for o, (_, c) in zip(outs, inputs, strict=True) for p in conv.output_planes(o, c)
        ]
    finally:
        torch.set_num_threads(threads)
    for preset in BUDGET_PRESETS:

        def encode(preset: str = preset) -> None:
            size = (info.width * up.scale, info.height * up.scale)
            writer = VideoWriter(folder / "budget.mp4", info, *size,
                                 EncodeOptions("libx264", crf=18, preset=preset))  # fmt: skip
            for frame, p in zip(decoded, planes, strict=True):
                writer.write(p, frame.pts)
            writer.close()

        rows.append((f"encode: frame build + libx264 {preset} (its threads)", cpu_ms(encode, n, 1)))  # fmt: skip
    return rows


def bench_case(name, net, scale, channels, size, frames, batch, folder, args, baseline) -> dict:
    width, height = size
    clip = make_clip(folder / f"{name.split()[0].lower()}.mp4", frames, width, height)
    info = probe_video(clip)
    gen = Generator(net.eval(), scale, channels, method=name)
    up = Upscaler(gen, device=args.device, channels_last=True, tile="auto")
    on_cpu = torch.device(args.device).type == "cpu"
    conv = FrameConverter(info, info.pix_fmt, scale, channels)
    decoded = list(read_frames(info))
    batches = [conv.net_input(decoded[i : i + batch])[0] for i in range(0, len(decoded), batch)]
    precision, why = choose_precision(up, batches[0][:1])
    print(f"{name}: precision auto -> {precision} ({why})", flush=True)
    row = {"name": name, "in": f"{width}x{height}", "out": f"{width * scale}x{height * scale}",
           "frames": len(decoded), "precision": precision, "e2e": 0.0, "before": 0.0,
           "alone": 0.0, "workers": 0.0}  # fmt: skip
    target = folder / f"out_{clip.name}"
    for rnd in range(args.rounds):
        if baseline is not None:
            row["before"] = max(row["before"], end_to_end(baseline, up, info, target, batch, precision))  # fmt: skip
        row["e2e"] = max(row["e2e"], end_to_end(video, up, info, target, batch, precision))
        row["alone"] = max(row["alone"], net_alone(up, batches))
        if on_cpu:  # single-threaded workers are how the pipeline runs the net on a CPU only
            row["workers"] = max(row["workers"], net_alone_workers(up, batches))
        print(f"{name} round {rnd}: {row}", flush=True)
    base_net = net.to(memory_format=torch.contiguous_format)
    base = Upscaler(gen.__class__(base_net, scale, channels), device=args.device)
    row["fp32"] = net_alone(base, batches[: max(1, len(batches) // 2)])
    row["gflop"] = conv_flops(net, channels, height, width) / 1e9
    if args.budget and channels == 1 and on_cpu:
        up.autocast_dtype = PRECISIONS[precision]
        row["budget"] = stage_budget(up, info, precision, batch, folder)
    return row


def render(rows: list[dict], meta: dict) -> str:
    before = meta["baseline"] is not None
    on_cpu = meta["device"] == "cpu"
    start, end = markers(meta["device"])
    lines = [
        start,
        "### Video (`sr-upscale input=clip.mp4`, `scripts/bench_video.py`)"
        + ("" if on_cpu else f" on {meta['device_name']}"),
        "",
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores, torch "
        f"{meta['torch']}, {meta['threads']} threads, PyAV {meta['av']}); load average "
        f"{meta['load_before']} before, {meta['load_after']} after: **a shared machine**, so "
        "compare the columns of one row (same run, same frames, interleaved over "
        f"{meta['rounds']} rounds, best round each), not the absolute rates. End to end = "
        "decode + net + libx264 `veryfast` crf 18 encode, overlapped (the defaults)"
        + (f"; before = the pipeline of `{meta['baseline']}` on the same frames" if before else "")
        + ". Net alone = the same batches of decoded frames through the same net, precision and "
        "layout (channels_last): "
        + (
            "one batch at a time on all threads, or batches side by side in single-threaded "
            "workers; the ratio is against the faster."
            if on_cpu
            else "one batch at a time on the device, synchronised."
        )
        + " GEMM ceiling = GFLOP per "
        "frame / the rate of a 1536² matmul in that precision, measured here ("
        + ", ".join(f"{rate:.0f} GFLOP/s {name}" for name, rate in meta["gemm"].items())
        + ")."
        + (
            ""
            if on_cpu
            else f" Device: {meta['device_name']}; decode and encode on the host's CPU. Goal "
            f"(issue 26, the ESPCN paper's real-time claim): ESPCN x3 to 1080p at >= "
            f"{GPU_GOAL_FPS} frames/s end to end."
        ),
        "",
        "| case | frames | precision (auto) | "
        + ("end to end before | " if before else "")
        + "end to end (frames/s) | "
        + ("net alone, all threads | net alone, workers | " if on_cpu else "net alone | ")
        + "end to end / net | net fp32 NCHW | GFLOP / frame | net GFLOP/s | GEMM ceiling "
        "(frames/s) |",
        "|---|---|---|"
        + ("---|" if before else "")
        + ("---|" if on_cpu else "")
        + "---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = meta["gemm"][r["precision"]]
        alone = max(r["alone"], r["workers"])
        workers = f"{r['workers']:.2f} | " if on_cpu else ""  # no workers on a GPU
        lines.append(
            f"| {r['name']} {r['in']} → {r['out']} | {r['frames']} | {r['precision']} | "
            + (f"{r['before']:.2f} ({r['before'] / alone:.2f}) | " if before else "")
            + f"**{r['e2e']:.2f}** | {r['alone']:.2f} | {workers}"
            f"**{r['e2e'] / alone:.2f}** | {r['fp32']:.2f} | {r['gflop']:.1f} | "
            f"{alone * r['gflop']:.0f} | {rate / r['gflop']:.1f} |"
        )
    if not on_cpu:
        espcn = rows[0]
        met = "met" if espcn["e2e"] >= GPU_GOAL_FPS else "not met"
        lines += ["", f"{espcn['name']} end to end {espcn['e2e']:.1f} frames/s: the goal of "
                  f"{GPU_GOAL_FPS} is {met}."]  # fmt: skip
    for r in rows:
        if "budget" in r:
            lines += render_budget(r, meta["cores"])
    lines.append(end)
    return "\n".join(lines)


def render_budget(row: dict, cores: int) -> list[str]:
    """The core budget of one case: each stage's CPU time, and per preset what their sum
    allows. Bound / net alone = the split net's CPU time over all stages' with it: the ratio
    end to end could reach with no core ever idle and the net as cheap as it is alone."""
    # The net keeps every core busy, so its share is cores / its frames per second alone (the
    # table's wall-clock columns): its process CPU time would also count OpenMP's spinning.
    split, workers = 1000 * cores / row["alone"], 1000 * cores / row["workers"]
    budget = list(row["budget"])
    budget[2:2] = [
        (f"the net ({row['precision']}), each batch split across all threads (net alone)", split),
        (f"the net ({row['precision']}), batches side by side in workers (the pipeline)", workers),
    ]
    rest = sum(ms for stage, ms in budget if not stage.startswith(("encode", "the net")))
    lines = [
        "",
        f"Core budget of {row['name']}: CPU time per frame of each stage alone on the same "
        f"frames ({cores} cores = {cores * 1000} CPU-ms a second; conversions on one thread, as "
        "the pipeline's workers run them; PyAV's codecs with their own threads; the net, which "
        "keeps every core busy, as cores / its frames per second alone).",
        "",
        "| stage | CPU-ms / frame |",
        "|---|---|",
    ]
    lines += [f"| {stage} | {ms:.1f} |" for stage, ms in budget]
    lines += ["", "| encoder preset | all stages, net split (CPU-ms / frame) | at most (frames/s) "
              "| at most / net alone | all stages, net in workers | at most (frames/s) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for stage, ms in budget:
        if stage.startswith("encode"):
            preset = stage.split("libx264 ")[1].split(" ")[0]
            best, ours = split + rest + ms, workers + rest + ms
            lines.append(
                f"| {preset} | {best:.0f} | {cores * 1000 / best:.1f} | {split / best:.2f} | "
                f"{ours:.0f} | {cores * 1000 / ours:.1f} |"
            )
    return lines


def markers(device: str) -> tuple[str, str]:
    """The CPU table and a GPU's each have their own section of benchmarks.md."""
    return (START, END) if torch.device(device).type == "cpu" else (GPU_START, GPU_END)


def write_doc(text: str, device: str) -> None:
    start, end = markers(device)
    doc = DOC.read_text() if DOC.exists() else ""
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    doc = (
        pattern.sub(lambda _m: text, doc)
        if pattern.search(doc)
        else doc.rstrip() + "\n\n" + text + "\n"
    )
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs=2, default=(48, 16),
                        help="frames of the ESPCN and SRResNet clips (whole batches for every worker: 6 left one idle)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=4, help="frames per forward pass")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per case")
    parser.add_argument("--baseline", help="a git revision whose pipeline runs as 'before'")
    parser.add_argument("--no-budget", dest="budget", action="store_false",
                        help="skip the per-stage core budget")  # fmt: skip
    parser.add_argument("--no-doc", action="store_true", help="print; leave benchmarks.md")
    parser.add_argument("--device", default="cpu",
                        help="cuda: the net on the GPU (fp16 when faster), the GPU goal's run")  # fmt: skip
    args = parser.parse_args()
    cuda = torch.device(args.device).type == "cuda"
    baseline = load_pipeline(args.baseline) if args.baseline else None
    load_before = "/".join(f"{x:.1f}" for x in os.getloadavg())
    torch.manual_seed(0)
    cases = [
        ("ESPCN x3", ESPCN(3, 1, widths=(64, 32), activation="relu"), 3, 1, (640, 360)),
        ("SRResNet x4", SRResNet(4, 3, num_blocks=16, width=64), 4, 3, (320, 180)),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for (name, net, scale, channels, size), frames in zip(cases, args.frames, strict=True):
            rows.append(bench_case(name, net, scale, channels, size, frames, args.batch,
                                   Path(tmp), args, baseline))  # fmt: skip
    meta = {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "av": av.__version__,
        "load_before": load_before,
        "load_after": "/".join(f"{x:.1f}" for x in os.getloadavg()),
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if cuda else "cpu",
        "gemm": {
            name: gemm_rate(PRECISIONS[name] or torch.float32, args.device)
            for name in ("fp32", "fp16" if cuda else "bf16")
        },
        "rounds": args.rounds,
        "baseline": args.baseline,
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
        write_doc(text, args.device)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
