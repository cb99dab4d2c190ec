#!/usr/bin/env python
"""GPU numbers and checks, for a machine with a CUDA GPU (one short run, a few minutes).

    python scripts/bench_gpu.py --json gpu.json --md docs/benchmarks.md   # on the GPU machine
    python scripts/bench_gpu.py --device cpu --quick --json /tmp/g.json    # smoke run, no GPU

What the CPU benchmarks (``scripts/bench.py``) can only estimate:

* ``consumed``: SRResNet x4 training patches/s (96 px HR, batch 16) on the device, fp32 and
  bf16-mixed, NCHW and channels_last; with bf16 and channels_last outputs checked against fp32.
* ``feed``: patches/s the training pipeline delivers to the device, degradation included:
  device-fed (``data.device_cache=true``) and host-fed with 0 and more workers.
* ``imresize``: MATLAB bicubic x1/4 of 16x3x192x192 on the device, and its agreement with the
  CPU float64 result (no TF32 leaking in).
* ``nccl_ddp``: a DistributedDataParallel SRResNet step over NCCL (one process per GPU here).

It needs torch, lightning and Pillow only (no Hydra), which the lent GPU machines have, and
makes its own training images (random smooth images of T91/BSD200/DIV2K sizes), so nothing
has to travel with the repo. Results go to the JSON and, with ``--md``, to the section between
the ``gpu`` markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench import machine_info, median, write_markdown  # noqa: E402
from sr_lightning.data.datasets import ImageSet  # noqa: E402
from sr_lightning.data.degradation import degrade_train  # noqa: E402
from sr_lightning.data.imresize import imresize  # noqa: E402
from sr_lightning.nets.srresnet import SRResNet  # noqa: E402

GPU_START, GPU_END = "<!-- gpu:start -->", "<!-- gpu:end -->"
SCALE, PATCH, BATCH = 4, 96, 16


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rates(step: Callable[[], int], device: torch.device, steps: int, runs: int) -> list[float]:
    """Items/s of ``runs`` timed runs of ``steps`` calls each, after a warm-up run."""
    out = []
    for run in range(runs + 1):
        sync(device)
        start, n = time.perf_counter(), 0
        for _ in range(steps):
            n += step()
        sync(device)
        if run:  # the first run warms up kernels, cuDNN autotuning and the allocator
            out.append(n / (time.perf_counter() - start))
    return out


def synthetic_set(n_small: int, n_large: int, seed: int = 0) -> ImageSet:
    """Smooth random RGB images of T91/BSD200 sizes (481x321) and DIV2K sizes (2040x1356)."""
    g = torch.Generator().manual_seed(seed)
    images = []
    for i in range(n_small + n_large):
        h, w = (321, 481) if i < n_small else (1356, 2040)
        coarse = torch.rand(1, 3, h // 8, w // 8, generator=g)
        image = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        images.append((image[0] * 255).round().to(torch.uint8))
    return ImageSet("synthetic", [f"img{i}" for i in range(len(images))], images)


# -- what SRResNet x4 consumes ----------------------------------------------------------------


def bench_consumed(device: torch.device, quick: bool) -> dict:
    # quick (the CPU smoke run): bf16 convolutions are slow on CPUs without bf16 units
    steps, runs, batch, patch = (1, 1, 1, 48) if quick else (50, 5, BATCH, PATCH)
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(batch, 3, patch, patch, generator=g).to(device)
    lr = degrade_train(hr, SCALE)
    out: dict[str, Any] = {"batch": batch, "patch": patch}
    reference = None
    for precision in ("fp32", "bf16-mixed"):
        for channels_last in (False, True):
            torch.manual_seed(0)
            net = SRResNet(scale=SCALE, channels=3).to(device)
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            net = net.to(memory_format=fmt)
            x = lr.contiguous(memory_format=fmt)
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
            autocast = torch.autocast(device.type, torch.bfloat16, enabled=precision != "fp32")

            with torch.no_grad(), autocast:
                sample = net(x[:1]).float()
            if reference is None:
                reference = sample
            diff = float((sample - reference).abs().max())

            def step(net=net, x=x, optimizer=optimizer, autocast=autocast) -> int:
                optimizer.zero_grad(set_to_none=True)
                with autocast:
                    loss = F.mse_loss(net(x).float(), hr)
                loss.backward()
                optimizer.step()
                return batch

            found = rates(step, device, steps, runs)
            key = precision + ("+channels_last" if channels_last else "")
            out[key] = {
                "patches_per_s": round(median(found), 1),
                "runs": [round(r, 1) for r in found],
                "max_abs_diff_vs_fp32": round(diff, 5),
            }
    return out


# -- what the pipeline feeds ------------------------------------------------------------------


def datamodule(images: ImageSet, device: torch.device, device_cache: str, workers: int):
    from sr_lightning.data.datamodule import SRDataModule

    dm = SRDataModule(
        data_dir=".",
        train_sets=["synthetic"],
        scale=SCALE,
        channels=3,
        patch_size=PATCH,
        batch_size=BATCH,
        patches_per_image=64,
        num_workers=workers,
        pin_memory=True,
        persistent_workers=True,
        device_cache=device_cache,
        # the GPU path: HR batches degraded on the device (also in the CPU smoke test)
        degradation="online",
    )
    dm.train_set = images  # made in memory; no folder to load
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=device))
    return dm


def endless(loader):
    """Batches across epochs (persistent workers are reused)."""
    while True:
        yield from loader


def bench_feed(device: torch.device, quick: bool) -> dict:
    images = synthetic_set(*((12, 2) if quick else (291, 24)))
    steps, runs = (5, 2) if quick else (200, 5)
    worker_counts = (0, 2) if quick else (0, 4, 8)
    out: dict[str, Any] = {"images": len(images), "batch": BATCH, "patch": PATCH}

    dm = datamodule(images, device, "true", 0)
    batches = endless(dm.train_dataloader())

    def device_fed() -> int:
        return dm.on_after_batch_transfer(next(batches).to(device), 0)["hr"].shape[0]

    found = rates(device_fed, device, steps, runs)
    # the gather cuts exactly the host crops
    rows = next(batches)
    crops = dm.packed_on(device).crop(rows.to(device), PATCH).cpu()
    exact = all(
        torch.equal(crop, images.images[i][:, top : top + PATCH, left : left + PATCH])
        for crop, (i, top, left) in zip(crops, rows.tolist(), strict=True)
    )
    out["device_cache"] = {
        "patches_per_s": round(median(found), 1),
        "runs": [round(r, 1) for r in found],
        "packed_bytes": dm.packed_on(device).nbytes,
        "crops_equal_host_slices": exact,
    }
    for workers in worker_counts:
        host = datamodule(images, device, "false", workers)
        host_batches = endless(host.train_dataloader())

        def host_fed(host=host, host_batches=host_batches) -> int:
            batch = next(host_batches).to(device, non_blocking=True)
            return host.on_after_batch_transfer(batch, 0)["hr"].shape[0]

        found = rates(host_fed, device, steps, runs)
        out[f"host_workers_{workers}"] = {
            "patches_per_s": round(median(found), 1),
            "runs": [round(r, 1) for r in found],
        }
    return out


# -- imresize ---------------------------------------------------------------------------------


def bench_imresize(device: torch.device, quick: bool) -> dict:
    x = torch.rand(16, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    on_device = x.to(device)
    found = rates(lambda: imresize(on_device, 0.25).shape[0], device, 5 if quick else 50, 3)
    reference = imresize(x.double(), 0.25)
    diff = float((imresize(on_device, 0.25).double().cpu() - reference).abs().max())
    return {
        "input": "16x3x192x192, x1/4",
        "ms": round(16_000 / median(found), 3),
        "max_abs_diff_vs_cpu_float64": diff,
    }


# -- NCCL DDP ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_nccl_ddp(device: torch.device, quick: bool) -> dict:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if device.type != "cuda" or not dist.is_nccl_available():
        return {"ran": False, "why": f"NCCL needs a CUDA device (this run: {device})"}
    dist.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        torch.manual_seed(0)
        net = DistributedDataParallel(SRResNet(scale=SCALE, channels=3).to(device), [device.index])
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
        hr = torch.rand(BATCH, 3, PATCH, PATCH, device=device)
        lr = degrade_train(hr, SCALE)

        def step() -> int:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", torch.bfloat16):
                loss = F.mse_loss(net(lr).float(), hr)
            loss.backward()
            optimizer.step()
            return BATCH

        found = rates(step, device, 3 if quick else 30, 3)
        return {
            "ran": True,
            "backend": dist.get_backend(),
            "world_size": dist.get_world_size(),
            "bf16_patches_per_s": round(median(found), 1),
        }
    finally:
        dist.destroy_process_group()


# -- report -----------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    m, c, f, r, d = (results[k] for k in ("machine", "consumed", "feed", "imresize", "nccl_ddp"))
    lines = [
        "",
        "## GPU (`scripts/bench_gpu.py`)",
        "",
        f"Measured {results['finished']} on {m['gpu'] or 'no GPU (CPU smoke run)'}, "
        f"torch {m['torch']}" + (" — **quick run**" if results["quick"] else "") + ".",
        "",
        f"SRResNet ×4 training, batch {c['batch']} × {c['patch']} px HR (what the model consumes):",
        "",
        "| precision / layout | patches/s | output vs fp32 (max abs) |",
        "|---|---|---|",
    ]
    for key in ("fp32", "fp32+channels_last", "bf16-mixed", "bf16-mixed+channels_last"):
        e = c[key]
        lines.append(f"| {key} | {e['patches_per_s']:,.0f} | {e['max_abs_diff_vs_fp32']:.1e} |")
    lines += [
        "",
        "Training batches delivered to the device, degradation included (what the pipeline "
        f"feeds; {f['images']} synthetic images of T91/BSD200 and DIV2K sizes):",
        "",
        "| feed | patches/s |",
        "|---|---|",
        f"| `data.device_cache=true` (crops exact: {f['device_cache']['crops_equal_host_slices']}) "
        f"| {f['device_cache']['patches_per_s']:,.0f} |",
    ]
    for key in sorted(k for k in f if k.startswith("host_workers_")):
        workers = key.rsplit("_", 1)[1]
        lines.append(f"| host-fed, {workers} workers | {f[key]['patches_per_s']:,.0f} |")
    ddp = (
        f"{d['backend']}, world size {d['world_size']}: {d['bf16_patches_per_s']:,.0f} patches/s "
        "(bf16)"
        if d["ran"]
        else d["why"]
    )
    lines += [
        "",
        f"imresize ×1/4 of {r['input'].split(',')[0]}: {r['ms']:.3f} ms, "
        f"max |Δ| vs CPU float64 {r['max_abs_diff_vs_cpu_float64']:.1e}. DDP step: {ddp}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default, help=f"default: {default}")
    parser.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--md", type=Path, help="update this markdown file's gpu section")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    start = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(torch.get_num_threads())}
    results["quick"] = args.quick
    for key, bench in (
        ("consumed", bench_consumed),
        ("feed", bench_feed),
        ("imresize", bench_imresize),
        ("nccl_ddp", check_nccl_ddp),
    ):
        results[key] = bench(device, args.quick)
        print(f"[bench_gpu] {key}: {json.dumps(results[key])}", flush=True)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["duration_s"] = round(time.perf_counter() - start, 1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        os.replace(tmp, args.json)
    if args.md:
        write_markdown(args.md, markdown(results), GPU_START, GPU_END)
    return results


if __name__ == "__main__":
    main()
