#!/usr/bin/env python
"""sr-lightning benchmarks: end-to-end speed against a plain loop, framework overhead in memory,
data pipeline, imresize, time to +1 dB.

    python scripts/bench.py --json benchmarks/results.json          # full run (`make bench`)
    python scripts/bench.py --quick --json /tmp/quick.json          # about 4 minutes
    python scripts/bench.py --profile                               # where a training step goes

Every figure is the median of repeated runs in this one process. All torch work runs on one
CPU thread (``--threads``) so that numbers on a shared machine stay comparable; the machine,
its load before and after every benchmark, and the versions go into the JSON and the docs.
The full run writes ``docs/benchmarks.md`` (its own section between the perf markers) and
``docs/figures/bench_*.png``; a quick run writes them only when ``--md`` is given.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import io
import json
import math
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from sr_lightning.core.derived import derive  # noqa: E402
from sr_lightning.runtime.machine import cpu_model  # noqa: E402

# NVIDIA H100 SXM5 datasheet: 989.4 dense BF16 tensor TFLOPS (1979 with 2:4 sparsity).
H100_BF16_DENSE_FLOPS = 989.4e12
ASSUMED_GPU_UTILISATION = 0.5
SET5_BICUBIC_X3 = 30.39  # the published Set5 x3 bicubic PSNR (Y, border 3)
PERF_START, PERF_END = "<!-- perf:start -->", "<!-- perf:end -->"


# -- machine and load ---------------------------------------------------------------------------


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_info(threads: int) -> dict:
    import lightning

    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "usable_cores": usable,
        "torch_threads": threads,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@contextmanager
def load_window(store: dict):
    """Record the 1/5/15-minute load averages before and after a benchmark."""
    store["load_before"] = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    yield
    store["load_after"] = [round(x, 2) for x in os.getloadavg()]
    store["wall_s"] = round(time.perf_counter() - start, 1)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- configs --------------------------------------------------------------------------------------


def compose_config(overrides: Sequence[str], workdir: Path) -> Any:
    """conf/train.yaml with overrides, every path under ``workdir`` (no Hydra run needed)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sr_lightning.core.config import CONF_DIR, register_resolvers

    register_resolvers()  # here, not at import: bench_gpu.py imports this file without Hydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *overrides,
                f"paths.root_dir={workdir}",
                f"paths.output_dir={workdir / 'run'}",
                f"paths.log_dir={workdir / 'logs'}",
            ],
        )
    GlobalHydra.instance().clear()
    return cfg


# -- 1. framework overhead ------------------------------------------------------------------------

# the ESPCN x3 preset as the convergence benchmark trains it: in fp32, the precision of its
# recorded numbers and of the plain loop beside it (the preset itself is trainer.precision=auto,
# bf16 on a CPU with AVX512-BF16; scripts/time_to_quality.py measures both precisions)
ESPCN_X3_FP32 = ["experiment=espcn_x3", "trainer.precision=32-true"]

OVERHEAD_MODELS = {
    # model -> (overrides, batch size). SRResNet's paper batch is 16; 4 keeps a CPU step near a
    # second. Both loops see the same batch either way.
    "espcn": (["model=espcn", "scale=3", "channels=1"], 16),
    "srresnet": (["model=srresnet", "scale=4", "channels=3"], 4),
}


class RepeatBatch(Dataset):
    """The same in-memory batch ``length`` times (``batch_size=None`` loaders)."""

    def __init__(self, batch: dict, length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.batch


def make_batch(cfg: Any, batch_size: int, seed: int = 0) -> dict:
    from sr_lightning.data.degradation import degrade_train

    gen = torch.Generator().manual_seed(seed)
    scale, channels, patch = int(cfg.scale), int(cfg.channels), derive(cfg).patch_size
    hr = torch.rand(batch_size, channels, patch, patch, generator=gen)
    return {"lr": degrade_train(hr, scale), "hr": hr, "scale": scale}


def first_optimizer(configured: Any) -> torch.optim.Optimizer:
    if isinstance(configured, torch.optim.Optimizer):
        return configured
    if isinstance(configured, dict):
        return configured["optimizer"]
    return configured[0][0] if isinstance(configured[0], list | tuple) else configured[0]


class StepTimes:
    """Start-to-start intervals of training steps, in CPU time and in wall-clock time.

    CPU time (``time.process_time``, all threads of this process) is the primary measure: on
    a machine shared with other jobs, wall time mostly measures how often the scheduler
    lets us run, while CPU time measures the work a step does.
    """

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def tick(self) -> None:
        self.cpu.append(time.process_time())
        self.wall.append(time.perf_counter())

    def steady(self) -> tuple[float, float]:
        return steady(np.diff(self.cpu).tolist()), steady(np.diff(self.wall).tolist())


def plain_loop(module: Any, batch: dict, steps: int) -> tuple[float, float]:
    """The hand-written loop: zero_grad, forward, MSE, backward, step (CPU s, wall s per step)."""
    net = module.net.train()
    optimizer = first_optimizer(module.configure_optimizers())
    lr, hr = batch["lr"], batch["hr"]
    clock = StepTimes()
    for _ in range(steps):
        clock.tick()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(lr), hr)
        loss.backward()
        optimizer.step()
    clock.tick()
    return clock.steady()


def lightning_trainer(
    cfg: Any,
    steps: int,
    extra_callbacks: Sequence = (),
    callbacks: bool = True,
    logger: bool = True,
    progress_bar: bool = True,
) -> Any:
    """The Trainer sr-train builds (callbacks, logger, progress bar), on the CPU, no validation.

    The switches remove one ingredient at a time, for ``--profile``'s overhead anatomy.
    """
    import hydra
    from lightning.pytorch.callbacks import ProgressBar

    from sr_lightning.runtime.builders import build_callbacks, build_loggers

    built = []
    if callbacks:
        # the same callbacks as sr-train (newer builders also take the trainer config)
        takes_trainer = len(inspect.signature(build_callbacks).parameters) > 1
        extra = (cfg.trainer,) if takes_trainer and progress_bar else ()
        built = build_callbacks(cfg.get("callbacks"), *extra)
    if not progress_bar:  # a configured bar would clash with enable_progress_bar=False
        built = [cb for cb in built if not isinstance(cb, ProgressBar)]
    return hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[*built, *extra_callbacks],
        logger=build_loggers(cfg.get("logger")) if logger else False,
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_checkpointing=callbacks,
        enable_progress_bar=progress_bar,
    )


def lightning_loop(
    cfg: Any, module: Any, batch: dict, steps: int, **switches: bool
) -> tuple[float, float]:
    """``trainer.fit`` over the same batch (CPU s, wall s per step, start to start)."""
    from lightning.pytorch import Callback

    clock = StepTimes()

    class StepClock(Callback):
        def on_train_batch_start(self, *args) -> None:
            clock.tick()

    trainer = lightning_trainer(cfg, steps, [StepClock()], **switches)
    loader = DataLoader(RepeatBatch(batch, steps + 1), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return clock.steady()


def steady(times: Sequence[float]) -> float:
    """Median step time once the first steps (allocator and cache warm-up) are over."""
    skip = max(2, len(times) // 10)
    return median(times[skip:] if len(times) > skip + 2 else times)


def bench_framework_overhead(workdir: Path, quick: bool) -> dict:
    from sr_lightning.core.builders import build_module

    plan = {"espcn": (60, 5) if quick else (200, 9), "srresnet": (6, 2) if quick else (12, 5)}
    out: dict[str, Any] = {
        "target": 1.05,
        "measure": "median CPU time per step (process_time, start to start), median over runs; "
        "ratio_wall: the same with wall-clock time",
    }
    for name, (overrides, batch_size) in OVERHEAD_MODELS.items():
        steps, runs = plan[name]
        cfg = compose_config(overrides, workdir / f"overhead_{name}")
        batch = make_batch(cfg, batch_size)
        entry: dict[str, Any] = {"batch": batch_size, "steps_per_run": steps, "runs": runs}
        plain, lightning = [], []
        with load_window(entry):
            plain_loop(build_module(cfg), batch, 3)  # warm-up: oneDNN kernels, allocator
            for run in range(runs):
                # alternate the order so that drifting machine load hits both loops alike
                for which in ("plain", "lightning") if run % 2 == 0 else ("lightning", "plain"):
                    torch.manual_seed(run)
                    module = build_module(cfg)
                    if which == "plain":
                        plain.append(plain_loop(module, batch, steps))
                    else:
                        lightning.append(lightning_loop(cfg, module, batch, steps))
        for key, i in (("", 0), ("_wall", 1)):
            p, lt = median([x[i] for x in plain]), median([x[i] for x in lightning])
            entry[f"plain_ms{key}"] = round(p * 1e3, 3)
            entry[f"lightning_ms{key}"] = round(lt * 1e3, 3)
            entry[f"ratio{key}"] = round(lt / p, 4)
        entry["per_run_ratio"] = [
            round(a[0] / b[0], 4) for a, b in zip(lightning, plain, strict=True)
        ]
        entry["patch_size"] = derive(cfg).patch_size
        out[name] = entry
        log(f"framework overhead {name}: {entry['ratio']:.3f} ({entry})")
    return out


# -- 2. data pipeline -----------------------------------------------------------------------------

DATA_SETTING = {"scale": 4, "channels": 3, "patch_size": 96, "batch_size": 16}


def _upscale_to_2k(args: tuple[Path, Path]) -> None:
    src, dst = args
    with Image.open(src) as image:
        image = image.convert("RGB")
        w, h = image.size
        if h > w:
            image = image.transpose(Image.Transpose.ROTATE_90)
            w, h = h, w
        big = image.resize((2040, round(2040 * h / w)), Image.Resampling.BICUBIC)
    big.save(dst)


def make_data_folder(folder: Path, data_dir: Path, n_2k: int) -> dict:
    """T91 + BSD200 (copied) plus ``n_2k`` DIV2K-size (2040 px wide) bicubic upscales of BSD200."""
    from concurrent.futures import ThreadPoolExecutor

    folder.mkdir(parents=True)
    counts = {}
    for set_name in ("T91", "BSD200"):
        files = sorted((data_dir / set_name).glob("*.png"))
        if not files:
            raise FileNotFoundError(f"no PNGs in {data_dir / set_name}: set SR_DATA_DIR")
        for path in files:
            shutil.copyfile(path, folder / f"{set_name}_{path.name}")
        counts[set_name] = len(files)
    sources = sorted((data_dir / "BSD200").glob("*.png"))[:n_2k]
    jobs = [(src, folder / f"2K_{src.stem}.png") for src in sources]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_upscale_to_2k, jobs))
    counts["2K (BSD200 upscaled to 2040 px wide)"] = len(jobs)
    return counts


class NaivePatches(Dataset):
    """What the naive pipeline does per sample: PIL decode, random crop, flips, PIL bicubic LR."""

    def __init__(self, files: Sequence[Path], patch: int, scale: int, per_image: int) -> None:
        self.files, self.patch, self.scale, self.per_image = list(files), patch, scale, per_image

    def __len__(self) -> int:
        return len(self.files) * self.per_image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.files[index // self.per_image]) as image:
            image = image.convert("RGB")
        p = self.patch
        left = random.randrange(image.width - p + 1)
        top = random.randrange(image.height - p + 1)
        hr = image.crop((left, top, left + p, top + p))
        if random.random() < 0.5:
            hr = hr.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if random.random() < 0.5:
            hr = hr.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if random.random() < 0.5:
            hr = hr.transpose(Image.Transpose.TRANSPOSE)
        lr = hr.resize((p // self.scale, p // self.scale), Image.Resampling.BICUBIC)

        def tensor(im: Image.Image) -> torch.Tensor:
            return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div_(255)

        return tensor(hr), tensor(lr)


def measure_rate(
    next_batch: Callable[[], int], batches: int, runs: int, warmup: int, restart: Callable
) -> list[float]:
    """Patches/s of ``runs`` runs of ``batches`` batches each, after ``warmup`` batches."""
    rates = []
    for _ in range(runs):
        restart()
        for _ in range(warmup):
            next_batch()
        start, n = time.perf_counter(), 0
        for _ in range(batches):
            n += next_batch()
        rates.append(n / (time.perf_counter() - start))
    return rates


def flops_per_patch_srresnet_x4(patch: int = 96) -> float:
    """FLOPs of one SRResNet x4 training sample (forward + backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    from sr_lightning.nets.srresnet import SRResNet

    net = SRResNet(scale=4, channels=3)
    x = torch.rand(2, 3, patch // 4, patch // 4)
    with FlopCounterMode(display=False) as counter:
        net(x).square().mean().backward()
    return counter.get_total_flops() / 2


def bench_datamodule(workdir: Path, folder: Path, cache_dir: Path, **options: Any) -> Any:
    """The SRResNet x4 setting's datamodule over the bench folder, disk-cached."""
    from sr_lightning.data.datamodule import SRDataModule

    s = DATA_SETTING
    return SRDataModule(
        data_dir=str(workdir),
        train_sets=[str(folder)],
        scale=s["scale"],
        channels=s["channels"],
        patch_size=s["patch_size"],
        batch_size=s["batch_size"],
        patches_per_image=64,
        pin_memory=False,
        cache="disk",
        cache_dir=str(cache_dir),
        # the GPU-run pipeline (HR batches, degraded after the transfer), measured on this CPU
        degradation="online",
        **options,
    )


def bench_data(workdir: Path, data_dir: Path, quick: bool) -> tuple[dict, dict]:
    n_2k = 8 if quick else 24
    runs, batches, naive_batches = (2, 40, 6) if quick else (5, 150, 20)
    folder = workdir / "bench_hr"
    start = time.perf_counter()
    composition = make_data_folder(folder, data_dir, n_2k)
    log(f"data folder {folder}: {composition} in {time.perf_counter() - start:.0f}s")
    s = DATA_SETTING
    rates: dict[str, Any] = {
        "setting": {**s, "model": "SRResNet x4 (RGB, 96 px HR patches, batch 16)"},
        "images": composition,
    }
    speedup: dict[str, Any] = {"target": 10.0}
    with load_window(rates):
        cache_dir = workdir / "cache"
        for workers in (0, 2):
            dm = bench_datamodule(
                workdir, folder, cache_dir, num_workers=workers, persistent_workers=True
            )
            t0 = time.perf_counter()
            dm.prepare_data()
            if workers == 0:
                rates["cache_build_s"] = round(time.perf_counter() - t0, 2)
            dm.setup("fit")
            loader = dm.train_dataloader()
            state: dict[str, Any] = {}

            def restart(state=state, loader=loader) -> None:
                state["it"] = iter(loader)  # persistent workers: the same workers every time

            def degraded(state=state, dm=dm) -> int:
                batch = dm.on_after_batch_transfer(next(state["it"]), 0)
                return batch["hr"].shape[0]

            def loader_only(state=state) -> int:
                return next(state["it"]).shape[0]

            ours = measure_rate(degraded, batches, runs, 3, restart)
            only = measure_rate(loader_only, batches, runs, 3, restart)
            # the same images as the cached dataset (those at least one patch in size)
            files = [folder / f"{name.split('/', 1)[-1]}.png" for name in dm.train_set.names]
            big_enough = [f for f in files if min(Image.open(f).size) >= s["patch_size"]]
            naive_ds = NaivePatches(big_enough, s["patch_size"], s["scale"], 64)
            naive_loader = DataLoader(
                naive_ds,
                batch_size=s["batch_size"],
                shuffle=True,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
            naive_state: dict[str, Any] = {}

            def naive_restart(state=naive_state, loader=naive_loader) -> None:
                state["it"] = iter(loader)

            def naive_next(state=naive_state) -> int:
                return next(state["it"])[0].shape[0]

            naive = measure_rate(naive_next, naive_batches, runs, 1, naive_restart)
            rates[f"workers_{workers}"] = {
                "ours": round(median(ours), 1),
                "ours_loader_only": round(median(only), 1),
                "naive": round(median(naive), 1),
                "ours_runs": [round(r, 1) for r in ours],
                "naive_runs": [round(r, 1) for r in naive],
            }
            speedup[f"workers_{workers}"] = round(median(ours) / median(naive), 1)
            log(f"data workers={workers}: {rates[f'workers_{workers}']}")
            del loader, naive_loader, state, naive_state
        rates["device_cache"] = bench_device_cache(workdir, folder, cache_dir, runs, batches)
    rates["cache_bytes"] = sum(p.stat().st_size for p in cache_dir.rglob("pixels.u8"))
    flops = flops_per_patch_srresnet_x4(s["patch_size"])
    need = ASSUMED_GPU_UTILISATION * H100_BF16_DENSE_FLOPS / flops
    per_worker = rates["workers_0"]["ours_loader_only"]
    dc = rates["device_cache"]
    speedup["h100_srresnet_x4"] = {
        "patches_per_s": round(need),
        "how": "estimated (no GPU lent): 50% of H100 SXM dense BF16 peak (989.4 TFLOPS) / "
        "training FLOPs per 96 px patch (forward + backward, counted by torch.utils.flop_counter)",
        "gflops_per_patch": round(flops / 1e9, 2),
        "loader_workers_needed_at_this_cpu_speed": math.ceil(need / per_worker),
        "ours_2_workers_fraction": round(rates["workers_2"]["ours_loader_only"] / need, 3),
        "device_cache_loader_fraction": round(dc["positions_per_s"] / need, 1),
        "device_cache_prep_flops_fraction": round(dc["prep_flops_per_patch"] / flops, 5),
        "device_cache_prep_time_fraction_cpu": round(
            dc["prep_ms_per_patch"] / dc["srresnet_step_ms_per_patch"], 4
        ),
    }
    return rates, speedup


def bench_device_cache(
    workdir: Path, folder: Path, cache_dir: Path, runs: int, batches: int
) -> dict:
    """``data.device_cache=true``: the loader hands out crop positions; the crop, augmentation
    and degradation run where the batch lands (here the CPU, on a GPU the GPU).

    Measures the positions the loader delivers, the patches/s with crop and degradation on this
    CPU, and what that batch preparation costs next to an SRResNet x4 training step on the
    same CPU, in time and in FLOPs (the share it would take of a GPU step too).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from sr_lightning.nets.srresnet import SRResNet

    s = DATA_SETTING
    dm = bench_datamodule(workdir, folder, cache_dir, device_cache="true")
    dm.setup("fit")
    loader = dm.train_dataloader()
    t0 = time.perf_counter()
    packed = dm.packed_on(torch.device("cpu"))
    pack_s = time.perf_counter() - t0
    state: dict[str, Any] = {}

    def restart() -> None:
        state["it"] = iter(loader)

    def positions() -> int:
        return next(state["it"]).shape[0]

    def prepared() -> int:
        return dm.on_after_batch_transfer(next(state["it"]), 0)["hr"].shape[0]

    only = measure_rate(positions, batches, runs, 3, restart)
    fed = measure_rate(prepared, batches, runs, 3, restart)
    restart()
    rows = next(state["it"])
    with FlopCounterMode(display=False) as counter:
        dm.make_train_batch(packed.crop(rows, s["patch_size"]))
    prep_flops = counter.get_total_flops() / rows.shape[0]

    # an SRResNet x4 training step on this CPU, per patch (batch 4, Adam)
    net = SRResNet(scale=4, channels=3)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    batch = dm.make_train_batch(packed.crop(rows[:4], s["patch_size"]))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(batch["lr"]), batch["hr"]).backward()
        optimizer.step()

    step_ms = 1000.0 * time_call(step, 3 if batches < 100 else 5) / 4
    prep_ms = 1000.0 / median(fed)
    return {
        "pack_s": round(pack_s, 2),
        "packed_bytes": packed.nbytes,
        "positions_per_s": round(median(only), 1),
        "ours_cpu": round(median(fed), 1),
        "positions_runs": [round(r, 1) for r in only],
        "ours_cpu_runs": [round(r, 1) for r in fed],
        "prep_ms_per_patch": round(prep_ms, 4),
        "prep_flops_per_patch": round(prep_flops),
        "srresnet_step_ms_per_patch": round(step_ms, 2),
    }


# -- 3. imresize ------------------------------------------------------------------------------------


def _cubic(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return np.where(
        a <= 1,
        1.5 * a**3 - 2.5 * a**2 + 1,
        np.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0),
    )


def _contributions(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel: source indices (mirrored at the borders) and normalised weights."""
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    first = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = first[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    table = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    idx = table[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    used = np.any(weights != 0, axis=0)
    return idx[:, used], weights[:, used]


def numpy_imresize(x: np.ndarray, scale: float) -> np.ndarray:
    """Reference MATLAB bicubic imresize in NumPy: gather taps and weight them, axis by axis."""
    for axis in (-2, -1):
        n_in = x.shape[axis]
        idx, w = _contributions(n_in, math.ceil(n_in * scale - 1e-9), scale)
        moved = np.moveaxis(x, axis, -1)
        x = np.moveaxis((moved[..., idx] * w).sum(axis=-1), -1, axis)
    return x


def time_call(fn: Callable[[], Any], runs: int) -> float:
    fn()  # warm-up: caches, allocator
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def bench_imresize(quick: bool) -> dict:
    from sr_lightning.data.imresize import imresize

    runs = 7 if quick else 25
    x = torch.rand(16, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    x64 = x.numpy().astype(np.float64)
    out: dict[str, Any] = {"input": "16x3x192x192, x1/4 (MATLAB bicubic, antialiased)"}
    with load_window(out):
        out["torch_cpu"] = round(time_call(lambda: imresize(x, 0.25), runs) * 1e3, 3)
        x_double = x.double()
        out["torch_cpu_float64"] = round(time_call(lambda: imresize(x_double, 0.25), runs) * 1e3, 3)
        out["numpy_reference"] = round(time_call(lambda: numpy_imresize(x64, 0.25), runs) * 1e3, 3)
        out["torch_gpu"] = None
        if torch.cuda.is_available():
            xg = x.cuda()

            def on_gpu() -> None:
                imresize(xg, 0.25)
                torch.cuda.synchronize()

            out["torch_gpu"] = round(time_call(on_gpu, runs) * 1e3, 3)
    out["speedup_torch_cpu_vs_numpy"] = round(out["numpy_reference"] / out["torch_cpu"], 1)
    diff = np.abs(imresize(x.double(), 0.25).numpy() - numpy_imresize(x64, 0.25)).max()
    out["max_abs_diff_vs_numpy"] = float(f"{diff:.3g}")
    out["runs"] = runs
    log(f"imresize: {out}")
    return out


# -- 4. minutes to +1 dB ----------------------------------------------------------------------------


def bench_convergence(workdir: Path, data_dir: Path, quick: bool) -> dict:
    """ESPCN x3 on T91 (the paper's preset) until the training budget is spent.

    The clock counts training only: Set5 evaluations (every few seconds of training, by the
    callback below, with the papers' protocol) are excluded, as is building the data.
    """
    import hydra
    from lightning.pytorch import Callback

    from sr_lightning.core.builders import build_datamodule, build_module
    from sr_lightning.core.metrics import SRMetrics

    budget_s = 45.0 if quick else 480.0
    cfg = compose_config(
        [*ESPCN_X3_FP32, f"paths.data_dir={data_dir}", "data.num_workers=0"],
        workdir / "convergence",
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    datamodule.setup("fit")
    val_batches = [
        datamodule.make_eval_batch(item) for item in datamodule.val_dataloader()[0]
    ]  # Set5

    def evaluate() -> tuple[float, float]:
        sr_metric, bicubic_metric = SRMetrics(crop=3), SRMetrics(crop=3)
        from sr_lightning.data.degradation import bicubic_upscale

        was_training = module.training
        module.eval()
        with torch.no_grad():
            for batch in val_batches:
                sr_metric.update(module(batch["lr"]), batch["hr"])
                bicubic_metric.update(bicubic_upscale(batch["lr"], 3), batch["hr"])
        module.train(was_training)
        return float(sr_metric.compute()["psnr"]), float(bicubic_metric.compute()["psnr"])

    class Clock(Callback):
        def __init__(self) -> None:
            self.train_s = 0.0
            self.curve: list[tuple[float, float, int]] = []
            self.bicubic = float("nan")
            self.next_eval = 0.0

        def on_train_start(self, trainer, pl_module) -> None:
            self.mark = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            now = time.perf_counter()
            self.train_s += now - self.mark
            if self.train_s >= self.next_eval or self.train_s >= budget_s:
                psnr, self.bicubic = evaluate()
                self.curve.append((self.train_s / 60, psnr, trainer.global_step))
                self.next_eval = self.train_s + (3.0 if self.train_s < 60 else 10.0)
                if self.train_s >= budget_s:
                    trainer.should_stop = True
            self.mark = time.perf_counter()

    clock = Clock()
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[clock],
        logger=False,
        accelerator="cpu",
        devices=1,
        max_epochs=100_000,
        # the preset's BudgetLR spans this (the evaluations below count in Lightning's Timer)
        # a timedelta: instantiate would turn a dict into a DictConfig, which Lightning's Timer
        # takes for a timedelta
        max_time=timedelta(seconds=budget_s * 1.05),
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    out: dict[str, Any] = {"budget_minutes": round(budget_s / 60, 2), "quick": quick}
    with load_window(out):
        trainer.fit(module, datamodule=datamodule)
    target = clock.bicubic + 1.0
    reached = next(((m, p) for m, p, _ in clock.curve if p >= target), None)
    out.update(
        {
            "minutes": round(reached[0], 2) if reached else None,
            "bicubic_psnr": round(clock.bicubic, 3),
            "published_bicubic_psnr": SET5_BICUBIC_X3,
            "target_psnr": round(target, 3),
            "psnr_after_budget": round(clock.curve[-1][1], 3),
            "best_psnr_within_budget": round(max(p for _, p, _ in clock.curve), 3),
            "steps": clock.curve[-1][2],
            "curve": [[round(m, 3), round(p, 3), s] for m, p, s in clock.curve],
            "setting": "experiment=espcn_x3 trainer.precision=32-true (T91, luma, 51 px "
            "patches, batch 16, Adam 1e-3), "
            "Set5 x3 Y-PSNR with a 3 px border, training time only",
        }
    )
    log(
        f"convergence: +1 dB after {out['minutes']} min; "
        f"{out['psnr_after_budget']} dB after {out['budget_minutes']} min"
    )
    return out


# -- profile -------------------------------------------------------------------------------------


def _training_step_without_log(module: Any) -> None:
    """The module's training step minus ``self.log`` (what logging costs per step)."""

    def step(batch: dict, batch_idx: int) -> torch.Tensor:
        return module.compute_loss(*module.training_pair(batch))[0]

    module.training_step = step


ANATOMY = (
    # label, Trainer switches, keep self.log in training_step
    ("Lightning loop alone (no callbacks, logger, bar; no self.log)", {}, False),
    ("+ the module's logging (self.log in training_step)", {}, True),
    ("+ callbacks and CSV logger (sr-train's)", {"callbacks": True, "logger": True}, True),
    ("+ progress bar = what sr-train runs", {"callbacks": True, "logger": True, "bar": True}, True),
)


def overhead_anatomy(workdir: Path, batch_size: int = 1, steps: int = 200, runs: int = 5) -> str:
    """CPU ms per ESPCN step as ingredients are added; a tiny batch magnifies the overhead."""
    from sr_lightning.core.builders import build_module

    cfg = compose_config(OVERHEAD_MODELS["espcn"][0], workdir / "anatomy")
    batch = make_batch(cfg, batch_size)
    rows: dict[str, list[float]] = {"plain PyTorch loop": []}
    for label, *_ in ANATOMY:
        rows[label] = []
    plain_loop(build_module(cfg), batch, 3)
    for _ in range(runs):
        rows["plain PyTorch loop"].append(plain_loop(build_module(cfg), batch, steps)[0])
        for label, switches, keep_log in ANATOMY:
            module = build_module(cfg)
            if not keep_log:
                _training_step_without_log(module)
            rows[label].append(
                lightning_loop(
                    cfg,
                    module,
                    batch,
                    steps,
                    callbacks=switches.get("callbacks", False),
                    logger=switches.get("logger", False),
                    progress_bar=switches.get("bar", False),
                )[0]
            )
    plain = median(rows["plain PyTorch loop"])
    lines = [
        f"ESPCN x3, batch {batch_size}, {steps} steps x {runs} runs, median CPU ms per step:",
        "",
        "| configuration | ms/step | over plain |",
        "|---|---|---|",
    ]
    for label, values in rows.items():
        value = median(values)
        lines.append(f"| {label} | {value * 1e3:.2f} | {1e3 * (value - plain):+.2f} ms |")
    return "\n".join(lines)


def profile_steps(workdir: Path, steps: int = 300) -> str:
    """cProfile of sr-train's ESPCN training loop: the Python functions a step spends time in."""
    from sr_lightning.core.builders import build_module

    cfg = compose_config(OVERHEAD_MODELS["espcn"][0], workdir / "profile")
    batch = make_batch(cfg, OVERHEAD_MODELS["espcn"][1])
    module = build_module(cfg)
    trainer = lightning_trainer(cfg, steps)
    loader = DataLoader(RepeatBatch(batch, steps + 1), batch_size=None)
    profiler = cProfile.Profile()
    profiler.enable()
    trainer.fit(module, train_dataloaders=loader)
    profiler.disable()
    rows = []
    for (filename, line, name), (_, calls, _, cumulative, _) in pstats.Stats(
        profiler
    ).stats.items():
        if calls >= steps and ("lightning" in filename or "sr_lightning" in filename):
            short = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
            rows.append((cumulative / steps * 1e3, calls, f"{short}:{line}({name})"))
    rows.sort(reverse=True)
    text = io.StringIO()
    text.write(f"cProfile, {steps} ESPCN steps (batch 16); cumulative ms per step (inflated by ")
    text.write("the profiler), functions called at least once per step:\n")
    for ms, calls, where in rows[:40]:
        text.write(f"{ms:9.3f}  {calls:6d}  {where}\n")
    return text.getvalue()


# -- reporting ----------------------------------------------------------------------------------


def figures(results: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    fo = results.get("framework_overhead")
    dp = results.get("data_patches_per_s")
    if fo and dp:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[1, 1.4])
        models = [m for m in OVERHEAD_MODELS if m in fo]
        xs = np.arange(len(models))
        ratios = [fo[m]["ratio"] for m in models]
        ax1.bar(xs, ratios, 0.5, color=["C1" if r > fo["target"] else "C2" for r in ratios])
        ax1.axhline(1.0, color="k", lw=0.8)
        ax1.axhline(fo["target"], color="k", ls="--", lw=1, label=f"target {fo['target']}")
        for x, m in zip(xs, models, strict=True):
            e = fo[m]
            ax1.text(
                x,
                e["ratio"] + 0.005,
                f"×{e['ratio']:.3f}\n{e['plain_ms']:.1f} → {e['lightning_ms']:.1f} ms",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax1.set_xticks(xs, [f"{m}\n(batch {fo[m]['batch']})" for m in models])
        ax1.set_ylim(0.95, max([*ratios, fo["target"]]) + 0.08)
        ax1.set_ylabel("sr-lightning / plain PyTorch (CPU time per step)")
        ax1.set_title("Framework overhead")
        ax1.legend(fontsize=8, loc="upper right")
        kinds = [
            ("naive", "naive: PIL decode + crop + resize per sample"),
            ("ours", "sr-lightning, degradation on this CPU"),
            ("ours_loader_only", "sr-lightning loader (uint8 batches)"),
        ]
        xs = np.arange(2)
        for i, (key, label) in enumerate(kinds):
            values = [dp[f"workers_{w}"][key] for w in (0, 2)]
            ax2.bar(xs + (i - 1) * 0.27, values, 0.27, label=label)
        h100 = results["data_speedup_vs_naive"]["h100_srresnet_x4"]["patches_per_s"]
        ax2.axhline(h100, color="k", ls="--", lw=1, label="SRResNet ×4 on an H100 (estimate)")
        ax2.set_xticks(xs, ["0 workers", "2 workers"])
        ax2.set_yscale("log")
        ax2.set_ylim(top=h100 * 4)
        ax2.set_ylabel("HR patches / s (96 px RGB, batch 16)")
        ax2.set_title("Training data pipeline")
        ax2.legend(fontsize=7, loc="upper left", ncol=2)
        fig.tight_layout()
        path = folder / "bench_pipeline.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    conv = results.get("minutes_to_plus1db")
    if conv and conv.get("curve"):
        fig, ax = plt.subplots(figsize=(6, 3.8))
        curve = np.array([[m, p] for m, p, _ in conv["curve"]])
        ax.plot(curve[:, 0], curve[:, 1], label="ESPCN ×3 (Set5, Y)")
        ax.axhline(conv["bicubic_psnr"], color="grey", ls=":", label="bicubic")
        ax.axhline(conv["target_psnr"], color="k", ls="--", lw=1, label="bicubic + 1 dB")
        if conv["minutes"] is not None:
            ax.axvline(conv["minutes"], color="C1", lw=1)
        ax.set_xlabel("training minutes (this CPU, 1 thread)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_ylim(conv["bicubic_psnr"] - 1.5, max(curve[:, 1].max(), conv["target_psnr"]) + 0.5)
        ax.set_title("ESPCN ×3 on T91: time to bicubic + 1 dB")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / "bench_convergence.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def _load(entry: dict) -> str:
    before, after = entry.get("load_before"), entry.get("load_after")
    if not before:
        return ""
    return f"{before[0]:.1f} → {after[0]:.1f}"


def markdown_section(results: dict, figure_paths: Sequence[Path], md_path: Path) -> str:
    meta = results["meta"]
    m = meta["machine"]
    lines = [
        "",
        "## Performance (`make bench`, `scripts/bench.py`)",
        "",
        f"Measured {meta['finished'][:16].replace('T', ' ')} UTC"
        + (" — **quick run** (shorter runs and training budget)" if meta["quick"] else "")
        + f", in {meta['duration_s'] / 60:.1f} min.",
        f"Machine: {m['cpu']}, {m['usable_cores']} cores, no GPU; torch {m['torch']}, Lightning "
        f"{m['lightning']}, Python {m['python']}; torch on {m['torch_threads']} thread. "
        "The 1-minute load average before → after each benchmark is given (above ~1 the "
        "2 cores were shared with other work), and `uptime` said "
        f"`{meta['uptime_before']}` at the start and `{meta['uptime_after']}` at the end. Every "
        "figure is the median of repeated runs in one process; `benchmarks/results.json` has "
        "every run.",
        "",
    ]
    if results.get("end_to_end"):
        from bench_e2e import markdown as e2e_markdown

        lines += [*e2e_markdown(results["end_to_end"]), ""]
    fo = results.get("framework_overhead")
    if fo:
        lines += [
            "### Framework overhead, in memory",
            "",
            "The step alone, without data, validation or checkpoints (the end-to-end table "
            "above is what a run pays).",
            "",
            "Time per training step of the same net, loss, optimizer (the module's own "
            "`configure_optimizers`) and in-memory batch: `trainer.fit` with the Trainer, "
            "callbacks, logger and progress bar that `sr-train` builds, against a hand-written "
            "`zero_grad / forward / mse_loss / backward / step` loop. Target ≤ 1.05.",
            "",
            "| model | batch | plain loop ms/step | sr-lightning ms/step | ratio | runs (ratios) | load |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in OVERHEAD_MODELS:
            if name in fo:
                e = fo[name]
                lines.append(
                    f"| {name} | {e['batch']} × {e['patch_size']} px HR | {e['plain_ms']:.2f} | "
                    f"{e['lightning_ms']:.2f} | **{e['ratio']:.3f}** | {e['runs']} "
                    f"({', '.join(f'{r:.3f}' for r in e['per_run_ratio'])}) | {_load(e)} |"
                )
        lines.append("")
    dp, sp = results.get("data_patches_per_s"), results.get("data_speedup_vs_naive")
    if dp and sp:
        h = sp["h100_srresnet_x4"]
        lines += [
            "### Data pipeline",
            "",
            "HR patches per second delivered by the training DataLoader, SRResNet ×4 setting "
            "(RGB, 96 px HR patches, batch 16), from a folder of PNGs: "
            + ", ".join(f"{v} {k}" for k, v in dp["images"].items())
            + " (written to a temporary folder). *sr-lightning*: `SRDataModule` with the "
            f"memory-mapped disk cache (built once in {dp['cache_build_s']:.1f} s, "
            f"{dp['cache_bytes'] / 1e9:.2f} GB), degradation included (float, flips/rotations, "
            "MATLAB bicubic ×1/4, 8-bit rounding — here on the CPU, in the main process; on a GPU "
            "it runs there). *loader only*: the uint8 batches alone, which is what a GPU run "
            "waits for. *naive*: a dataset that decodes the PNG with PIL, crops, flips and "
            "resizes with PIL per sample.",
            "",
            "| workers | naive | sr-lightning | loader only | speedup vs naive | load |",
            "|---|---|---|---|---|---|",
        ]
        for w in (0, 2):
            e = dp[f"workers_{w}"]
            lines.append(
                f"| {w} | {e['naive']:.0f} | {e['ours']:.0f} | {e['ours_loader_only']:.0f} | "
                f"**{sp[f'workers_{w}']:.0f}×** | {_load(dp)} |"
            )
        lines += [
            "",
            f"An H100 training SRResNet ×4 consumes about **{h['patches_per_s']:,} patches/s** — "
            f"an *estimate*, no GPU was lent: {h['gflops_per_patch']} GFLOPs per 96 px patch "
            "(forward + backward, counted with `torch.utils.flop_counter`) at 50% of the H100 "
            "SXM dense BF16 peak (989.4 TFLOPS). One loader worker of this CPU delivers "
            f"{dp['workers_0']['ours_loader_only']:.0f} uint8 patches/s, so feeding that GPU "
            f"takes about {h['loader_workers_needed_at_this_cpu_speed']} workers at this CPU's "
            "speed; the 2 workers here reach "
            f"{100 * h['ours_2_workers_fraction']:.0f}% of it. The naive pipeline would need "
            f"~{math.ceil(h['patches_per_s'] / max(dp['workers_0']['naive'], 1e-9)):,} "
            "such workers.",
            "",
        ]
        dc = dp.get("device_cache")
        if dc:
            lines += [
                "With `data.device_cache=true` (the default `auto` turns it on for a CUDA "
                "device with room) the training images are packed once on the device "
                f"({dc['packed_bytes'] / 1e9:.2f} GB here, packed in {dc['pack_s']:.1f} s) and "
                "the loader hands out only crop positions; the crop is one gather on the device, "
                "followed by the same augmentation and degradation.",
                "",
                "| device cache | patches/s | runs |",
                "|---|---|---|",
                f"| loader: crop positions, 0 workers | {dc['positions_per_s']:,.0f} | "
                f"{', '.join(f'{r:,.0f}' for r in dc['positions_runs'])} |",
                f"| + crop, augmentation, degradation on this CPU | {dc['ours_cpu']:,.0f} | "
                f"{', '.join(f'{r:,.0f}' for r in dc['ours_cpu_runs'])} |",
                "",
                "The loader alone delivers "
                f"**{h['device_cache_loader_fraction']:g}×** what the H100 estimate consumes, "
                "with no worker process. The rest of the batch preparation runs on the GPU "
                "beside the model: on this CPU it takes "
                f"{dc['prep_ms_per_patch']:.3f} ms per patch against "
                f"{dc['srresnet_step_ms_per_patch']:.0f} ms per patch for an SRResNet ×4 "
                f"training step (**{100 * h['device_cache_prep_time_fraction_cpu']:.2f}%**), "
                f"and counts {dc['prep_flops_per_patch'] / 1e6:.1f} MFLOPs against "
                f"{h['gflops_per_patch']} GFLOPs "
                f"(**{100 * h['device_cache_prep_flops_fraction']:.3f}%**). The GPU rate itself "
                "is unmeasured until a GPU is lent: `scripts/bench_gpu.py` measures it there "
                "(the GPU section below).",
                "",
            ]
    ir = results.get("imresize_ms")
    if ir:
        gpu = f"{ir['torch_gpu']:.2f} ms" if ir.get("torch_gpu") else "not measured (no GPU)"
        lines += [
            "### imresize",
            "",
            f"MATLAB bicubic ×1/4 of a {ir['input'].split(',')[0]} batch (median of {ir['runs']}):",
            "",
            "| implementation | ms |",
            "|---|---|",
            f"| `sr_lightning.data.imresize`, torch CPU float32 | {ir['torch_cpu']:.2f} |",
            f"| same, float64 | {ir['torch_cpu_float64']:.2f} |",
            f"| NumPy reference (gathered taps, float64) | {ir['numpy_reference']:.2f} |",
            f"| torch GPU | {gpu} |",
            "",
            f"Torch on the CPU is {ir['speedup_torch_cpu_vs_numpy']:.0f}× faster than the NumPy "
            "reference; the "
            f"float64 outputs agree to {ir['max_abs_diff_vs_numpy']:.1e}. Load {_load(ir)}.",
            "",
        ]
    cv = results.get("minutes_to_plus1db")
    if cv:
        reached = (
            f"reaches it after **{cv['minutes']:.2f} min** of training"
            if cv["minutes"] is not None
            else f"does not reach it within {cv['budget_minutes']:g} min"
        )
        lines += [
            "### Time to bicubic + 1 dB",
            "",
            "ESPCN ×3 trained on T91 with the preset (`experiment=espcn_x3`: luma, 51 px "
            "patches, batch 16, Adam 1e-3), in fp32 (`trainer.precision=32-true`), on this CPU "
            "(1 thread); Set5 ×3 "
            "Y-PSNR with a 3 px border, evaluated every few seconds of training. The target is "
            f"bicubic + 1 dB = {cv['bicubic_psnr']:.2f} + 1 = {cv['target_psnr']:.2f} dB "
            f"(published bicubic {cv['published_bicubic_psnr']}). The run {reached}; after "
            f"{cv['budget_minutes']:g} min ({cv['steps']} steps) Set5 is at "
            f"**{cv['psnr_after_budget']:.2f} dB** (best on the way "
            f"{cv['best_psnr_within_budget']:.2f} dB)"
            + (
                " — *quick run: a shortened training budget, not the 8-minute figure*"
                if cv["quick"]
                else ""
            )
            + ". Minutes count training only (evaluations excluded). "
            f"Load {_load(cv)}.",
            "",
        ]
    for path in figure_paths:
        rel = os.path.relpath(path, md_path.parent)
        lines.append(f"![{path.stem}]({rel})")
    lines.append("")
    return "\n".join(lines)


def write_markdown(
    md_path: Path, section: str, start: str = PERF_START, end: str = PERF_END
) -> None:
    """Replace only the section between ``start`` and ``end``; other sections stay as they are."""
    text = md_path.read_text() if md_path.exists() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = md_path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, md_path)


def write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)


# -- main -------------------------------------------------------------------------------------------

BENCHMARKS = ("e2e", "overhead", "data", "imresize", "convergence")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about 4 min)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--md", type=Path, help="docs file (default for full runs: docs/benchmarks.md)"
    )
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"subset of {BENCHMARKS}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("SR_DATA_DIR"))
    parser.add_argument("--profile", action="store_true", help="profile ESPCN steps and exit")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "offline")
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {', '.join(BENCHMARKS)}")
    needs_data = {"e2e", "data", "convergence"} & set(chosen)
    missing = args.data_dir is None or not (Path(args.data_dir) / "T91").is_dir()
    if needs_data and missing and not args.profile:
        parser.error(
            "the data and convergence benchmarks need T91, BSD200 and Set5: set SR_DATA_DIR "
            "or --data-dir to the folder that holds them"
        )
    md_path = args.md or (None if args.quick else ROOT / "docs" / "benchmarks.md")

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="sr_bench_"))
    results: dict[str, Any] = {
        "meta": {
            "quick": args.quick,
            "machine": machine_info(args.threads),
            "uptime_before": uptime(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        }
    }
    log(f"{results['meta']['machine']} | {results['meta']['uptime_before']}")
    try:
        if args.profile:
            print(overhead_anatomy(workdir))
            print()
            print(profile_steps(workdir))
            return results
        data_dir = Path(args.data_dir) if args.data_dir else None
        if "e2e" in chosen:
            from bench_e2e import bench_end_to_end

            results["end_to_end"] = bench_end_to_end(data_dir, args.threads, args.quick, log)
        if "overhead" in chosen:
            results["framework_overhead"] = bench_framework_overhead(workdir, args.quick)
        if "data" in chosen:
            rates, speedup = bench_data(workdir, data_dir, args.quick)
            results["data_patches_per_s"] = rates
            results["data_speedup_vs_naive"] = speedup
        if "imresize" in chosen:
            results["imresize_ms"] = bench_imresize(args.quick)
        if "convergence" in chosen:
            results["minutes_to_plus1db"] = bench_convergence(workdir, data_dir, args.quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["uptime_after"] = uptime()
    results["meta"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["meta"]["duration_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        write_json(args.json, results)
        log(f"wrote {args.json}")
    if md_path:
        made = figures(results, args.figures)
        write_markdown(md_path, markdown_section(results, made, md_path))
        log(f"wrote {md_path} and {', '.join(str(p) for p in made)}")
    log(f"done in {results['meta']['duration_s']:.0f}s")
    return results


if __name__ == "__main__":
    main()
