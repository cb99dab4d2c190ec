"""Inference throughput of every method: output megapixels/s at x2, x3, x4.

    python scripts/bench_inference.py                      # every method, scale and variant
    python scripts/bench_inference.py --device cuda        # on a GPU (adds nothing else)
    python scripts/bench_inference.py --size 640x360 --compile-scales 2 3 4   # a long CPU run

The defaults fit the device: on a GPU a 640x360 input with every variant at every scale; on
a CPU a 96x54 input with ``compile`` at x4 only (a few minutes; the full CPU run takes an
hour on a 2-core machine).
    python scripts/bench_inference.py --memory             # 4000x3000 x4 SRResNet: peak RSS

Each method runs its paper configuration (conf/model/<method>.yaml; SRCNN, ESPCN and VDSR on
luma, SRResNet on RGB; SRGAN's generator is SRResNet) with random weights, which cost what
trained ones do. What is timed is the model function of ``sr-upscale`` on one whole image:
the net, plus MATLAB bicubic upsampling for the pre-upsampling nets (SRCNN, VDSR). Variants:

* ``eager``: PyTorch, NCHW float32;
* ``channels_last``: the net and its input in channels-last memory format;
* ``compile``: ``torch.compile`` of the net (not of a LightningModule);
* ``onnxruntime``: the ``sr-export`` ONNX graph run by onnxruntime.

A number is the median over ``--repeats`` timed runs after one warm-up run (which for
``compile`` includes compilation). Results go to the console, to ``docs/benchmarks.md``
between ``<!-- inference:start -->`` and ``<!-- inference:end -->`` (one sub-section per
device), and to a figure ``docs/figures/inference.png`` (``inference_cuda.png`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from sr_lightning.core.builders import to_plain  # noqa: E402
from sr_lightning.core.config import CONF_DIR, register_resolvers  # noqa: E402
from sr_lightning.core.derived import net_config  # noqa: E402
from sr_lightning.core.inference import Generator, Upscaler  # noqa: E402
from sr_lightning.nets import upsampling_kind  # noqa: E402
from sr_lightning.runtime.machine import cpu_model  # noqa: E402

METHODS = {"srcnn": 1, "espcn": 1, "vdsr": 1, "srresnet": 3}  # method -> paper channels
VARIANTS = ("eager", "channels_last", "compile", "onnxruntime")
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- inference:start -->", "<!-- inference:end -->"


# -- environment ----------------------------------------------------------------------------


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    threads = torch.get_num_threads()
    return f"{cpu_model()}, {os.cpu_count()} cores, {threads} thread{'s' if threads > 1 else ''}"


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# -- models ---------------------------------------------------------------------------------


def build_generator(method: str, scale: int) -> Generator:
    """The paper configuration of ``method`` at ``scale``, with random weights."""
    register_resolvers()
    channels = METHODS[method]
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"model={method}", f"scale={scale}", f"channels={channels}"]
        )
    GlobalHydra.instance().clear()
    torch.manual_seed(0)
    net = instantiate(net_config(to_plain(cfg.model.net), scale, channels)).eval()
    return Generator(net, scale, channels, upsampling_kind(net), method)


def onnx_generator(gen: Generator, folder: Path, device: torch.device) -> Generator:
    from dataclasses import replace

    from sr_lightning.apps.export import export_generator
    from sr_lightning.core.model_files import OnnxNet

    path = folder / f"{gen.method}_x{gen.scale}.onnx"
    spec = {"_target_": f"{type(gen.net).__module__}.{type(gen.net).__name__}"}
    export_generator(replace(gen, spec=spec), path, "onnx", check=False, overwrite=True)
    net = OnnxNet(path, device, threads=torch.get_num_threads())  # as many threads as torch
    return Generator(net, gen.scale, gen.channels, gen.upsampling, gen.method)


# -- timing ---------------------------------------------------------------------------------


def time_once(up: Upscaler, x: torch.Tensor) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        up.sr_model(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    w, h = args.size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            for scale in args.scales:
                gen = build_generator(method, scale)
                x = torch.rand(1, gen.channels, h, w, device=device)
                mpix = h * w * scale * scale / 1e6
                for variant in args.variants:
                    if variant == "compile" and scale not in args.compile_scales:
                        continue
                    try:
                        if variant == "onnxruntime":
                            g = onnx_generator(gen, Path(tmp), device)
                            up = Upscaler(g, device=device)
                        else:
                            up = Upscaler(
                                gen,
                                device=device,
                                channels_last=variant == "channels_last",
                                compile=variant == "compile",
                            )
                        warm = time_once(up, x)
                        times = [time_once(up, x) for _ in range(args.repeats)]
                    except Exception as err:  # report and go on: one variant must not end the run
                        print(f"{method} x{scale} {variant}: failed: {err}", file=sys.stderr)
                        continue
                    med = statistics.median(times)
                    row = {
                        "method": method,
                        "scale": scale,
                        "variant": variant,
                        "seconds": med,
                        "mpix_per_s": mpix / med,
                        "warmup_s": warm,
                    }
                    rows.append(row)
                    print(
                        f"{method:9s} x{scale} {variant:14s} {mpix / med:8.2f} MP/s "
                        f"({med * 1000:8.1f} ms; warm-up {warm:.1f} s)",
                        flush=True,
                    )
    return rows


# -- report ---------------------------------------------------------------------------------


def table(rows: list[dict], variants: list[str]) -> str:
    lines = [
        "| method | scale | " + " | ".join(variants) + " |",
        "|---|---|" + "---:|" * len(variants),
    ]
    keys = sorted(
        {(r["method"], r["scale"]) for r in rows}, key=lambda k: (list(METHODS).index(k[0]), k[1])
    )
    for method, scale in keys:
        cells = []
        for v in variants:
            hit = [r for r in rows if (r["method"], r["scale"], r["variant"]) == (method, scale, v)]
            cells.append(f"{hit[0]['mpix_per_s']:.3g}" if hit else "–")
        lines.append(f"| {method} | ×{scale} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(rows: list[dict], variants: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(
        {(r["method"], r["scale"]) for r in rows}, key=lambda k: (list(METHODS).index(k[0]), k[1])
    )
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(keys) + 2), 4))
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        values = []
        for key in keys:
            hit = [r for r in rows if (r["method"], r["scale"], r["variant"]) == (*key, v)]
            values.append(hit[0]["mpix_per_s"] if hit else np.nan)
        xs = np.arange(len(keys)) + (i - (len(variants) - 1) / 2) * width
        ax.bar(xs, values, width, label=v)
    ax.set_xticks(np.arange(len(keys)), [f"{m}\n×{s}" for m, s in keys])
    ax.set_yscale("log")
    ax.set_ylabel("output megapixels / s (log)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncol=len(variants))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_section(key: str, body: str) -> None:
    """Put ``body`` between ``<!-- inference/<key>:start/end -->`` inside this script's section."""
    sub_start, sub_end = f"<!-- inference/{key}:start -->", f"<!-- inference/{key}:end -->"
    block = f"{sub_start}\n{body.strip()}\n{sub_end}"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START not in text or END not in text:
        intro = (
            "## Inference\n\nOutput megapixels per second of `sr-upscale`'s model function "
            "(net + bicubic for pre-upsampling nets) on one image; written by "
            "`scripts/bench_inference.py`. See docs/inference.md.\n"
        )
        text = text.rstrip() + f"\n\n{START}\n{intro}\n{END}\n"
    head, rest = text.split(START, 1)
    section, tail = rest.split(END, 1)
    if sub_start in section and sub_end in section:
        before, after = section.split(sub_start, 1)
        section = before + block + after.split(sub_end, 1)[1]
    else:
        section = section.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(head + START + section + END + tail)


def report(args: argparse.Namespace, rows: list[dict], loads: tuple[str, str]) -> None:
    device = torch.device(args.device)
    w, h = args.size
    name = machine(device)
    variants = [v for v in args.variants if any(r["variant"] == v for r in rows)]
    fig_name = "inference.png" if device.type == "cpu" else f"inference_{device.type}.png"
    title = f"{name}; {w}×{h} LR input"
    figure(rows, variants, REPO / "docs" / "figures" / fig_name, title)
    compile_note = (
        f" `compile` was run at ×{', ×'.join(map(str, args.compile_scales))} only."
        if set(args.compile_scales) != set(args.scales) and "compile" in variants
        else ""
    )
    body = (
        f"### {device.type.upper()}: {name}\n\n"
        f"{w}×{h} LR input, float32, batch 1; median of {args.repeats} runs after a warm-up; "
        f"torch {torch.__version__}, onnxruntime {_ort_version()}; load average "
        f"{loads[0]} before, {loads[1]} after (1/5/15 min).{compile_note}\n"
        f"{args.note}\n\n"
        f"{table(rows, variants)}\n\n"
        f"![inference throughput](figures/{fig_name})\n"
    )
    update_section(device.type, body)
    print(f"wrote {DOC.relative_to(REPO)} and docs/figures/{fig_name}")


def _ort_version() -> str:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return "not installed"


# -- memory -----------------------------------------------------------------------------------


def memory(args: argparse.Namespace) -> None:
    """Upscale a 4000x3000 RGB image x4 with the paper SRResNet, tiled; report peak RSS.

    ``--memory-tiles N`` runs only the first N tiles of the real plan (a full run takes about
    an hour on a small CPU); the report then adds the part of the uint8 output buffer those
    tiles did not write, which is all a full run holds in addition.
    """
    import sr_lightning.core.inference as inference

    gen = build_generator("srresnet", 4)
    rng = np.random.default_rng(0)
    w, h = args.memory_size
    image = (rng.random((-(-h // 8), -(-w // 8), 3)) * 255).astype(np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image, 8, axis=0), 8, axis=1)[:h, :w])
    up = Upscaler(gen, device=args.device, tile=args.memory_tile, progress=True)
    tile, overlap = up.tile_for(h, w, 3)
    plan = inference.plan_tiles(h, w, tile, overlap)
    limit = args.memory_tiles or len(plan)
    if limit < len(plan):
        inference.plan_tiles = lambda *a: plan[:limit]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    out = up.upscale(image)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t = plan[0]
    window = (t.cols.win1 - t.cols.win0, t.rows.win1 - t.rows.win0)
    written = (
        sum((p.rows.core1 - p.rows.core0) * (p.cols.core1 - p.cols.core0) for p in plan[:limit])
        * 16
        * 3
    )
    unwritten = (out.nbytes - written) / 2**30
    ran = (
        f"all {len(plan)} tiles"
        if limit == len(plan)
        else f"the first {limit} of {len(plan)} tiles"
    )
    line = (
        f"{w}×{h} RGB ×4 through SRResNet (paper config, 16 blocks, random weights) on "
        f"{machine(torch.device(args.device))}, `tile={args.memory_tile}` → tiles of "
        f"{window[0]}×{window[1]} LR pixels (measured overlap {overlap}; trained weights may "
        f"need up to the architectural 40); output {out.shape[1]}×"
        f"{out.shape[0]} {out.dtype} ({out.nbytes / 2**30:.2f} GiB). Ran {ran} in "
        f"{seconds / 60:.1f} min: peak RSS {peak:.2f} GiB (after loading: {rss_before:.2f} GiB)"
        + (
            f"; with the {unwritten:.2f} GiB of output the other tiles write, a full run "
            f"peaks at ≤ {peak + unwritten:.2f} GiB"
            if limit < len(plan)
            else ""
        )
        + f". Load average {load_average()}."
    )
    print(line)
    if args.write:
        update_section("memory", f"### Memory: a 4000×3000 image ×4\n\n{line}\n")
    print(json.dumps({"seconds": seconds, "peak_rss_gib": peak, "tiles": len(plan), "ran": limit}))


# -- main -------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"size must be WxH, e.g. 640x360, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--size", type=parse_size, default=None, help="LR input WxH (GPU 640x360, CPU 96x54)"
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--compile-scales", nargs="+", type=int, default=None,
                        help="scales at which to run `compile` (GPU: all, CPU: the largest)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--note", default="", help="a sentence added to the report")
    parser.add_argument("--save-json", type=Path, help="also write the measurements here")
    parser.add_argument("--load-json", type=Path, help="report saved measurements, run nothing")
    parser.add_argument("--no-write", dest="write", action="store_false", help="console only")
    parser.add_argument("--memory", action="store_true", help="run the 4000x3000 memory check")
    parser.add_argument("--memory-size", type=parse_size, default=(4000, 3000))
    parser.add_argument(
        "--memory-tile", default="auto", type=lambda s: s if s == "auto" else int(s)
    )
    parser.add_argument("--memory-tiles", type=int, default=0, help="run only the first N tiles")
    args = parser.parse_args()
    on_gpu = torch.device(args.device).type == "cuda"
    args.size = args.size or ((640, 360) if on_gpu else (96, 54))
    args.compile_scales = args.compile_scales or (args.scales if on_gpu else [max(args.scales)])
    if args.memory:
        memory(args)
        return
    if args.load_json:
        saved = json.loads(args.load_json.read_text())
        rows, loads = saved["rows"], tuple(saved["load_average"])
    else:
        load_before = load_average()
        rows = bench(args)
        loads = (load_before, load_average())
    if not rows:
        raise SystemExit("no variant ran")
    if args.save_json:
        args.save_json.write_text(json.dumps({"rows": rows, "load_average": loads}, indent=1))
    if args.write:
        report(args, rows, loads)


if __name__ == "__main__":
    main()
