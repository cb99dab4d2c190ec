"""End-to-end training speed: complete ``sr-train`` runs against the plain PyTorch loop.

Used by ``scripts/bench.py`` (``--only e2e``). Each round starts ``sr-train`` (the real
DataLoader, degradation, validation cadence, checkpoints, CSV logger, progress bar) bounded by
``trainer.max_time`` and ``scripts/plain_loop.py`` bounded by the same wall time, with the
same torch threads; side by side when the machine has a core for each, else one after the
other. Steps/s: sr-train's ``global_step`` over its Timer's train time (both from
``last.ckpt``), the plain loop's steps over its training time. A further sr-train run with
Lightning's SimpleProfiler gives the per-step anatomy (ms per part).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

# name -> (sr-train overrides, plain_loop.py arguments). SRResNet x4 on T91 RGB with 24 px HR
# patches (the paper's 96 px take ~0.7 s a step on one CPU thread), batch 16 as the preset.
MODELS = {
    # fp32 on both sides: the preset's trainer.precision=auto would put bf16 against fp32
    "espcn_x3": (["experiment=espcn_x3", "trainer.precision=32-true"], ["--model", "espcn"]),
    "srresnet_x4": (
        ["experiment=srresnet_x4", "data=t91", "model.patch_hr=24"],
        ["--model", "srresnet", "--lr-patch", "6"],
    ),
}


def _env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _sr_train(overrides: list[str], seconds: int, run_dir: Path, threads: int, extra=()):
    exe = Path(sys.executable).with_name("sr-train")
    args = [str(exe) if exe.exists() else "sr-train", *overrides]
    args += [f"trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}"]
    args += ["trainer.max_epochs=-1", "resume=never", "extras.print_config=false"]
    args += [f"hydra.run.dir={run_dir}", *extra]
    log = open(run_dir.parent / f"{run_dir.name}.log", "w")  # noqa: SIM115
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=_env(threads))


def _plain(args: list[str], seconds: int, out: Path, threads: int, data_dir: Path):
    cmd = [sys.executable, str(ROOT / "scripts" / "plain_loop.py"), *args]
    cmd += ["--minutes", str(seconds / 60), "--threads", str(threads), "--eval", "none"]
    cmd += ["--data-dir", str(data_dir)]
    return subprocess.Popen(cmd, stdout=open(out, "w"), env=_env(threads))


def _wait(proc: subprocess.Popen, what: str) -> None:
    if proc.wait() != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); see its log")


def sr_train_rate(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)
    elapsed = ckpt["callbacks"]["Timer"]["time_elapsed"]
    steps = int(ckpt["global_step"])
    return {"steps": steps, "train_s": elapsed["train"], "steps_per_s": steps / elapsed["train"]}


# SimpleProfiler action -> anatomy part (first match wins); the rest of the epoch loop's time
# is the loop itself, callbacks, logging and the progress bar
PARTS = (
    ("degradation", re.compile(r"on_after_batch_transfer")),
    ("checkpoint", re.compile(r"ModelCheckpoint|PreemptionCheckpoint|save_checkpoint")),
    ("validation", re.compile(r"validation|val_next|ImagePanels")),
)


def anatomy(profile: Path, steps: int) -> dict[str, float]:
    """ms per training step of each part, from a SimpleProfiler report."""
    totals: dict[str, float] = {}
    for line in profile.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 6 and re.fullmatch(r"[\d.e+-]+", cells[4] or "x"):
            totals[cells[1]] = float(cells[4])
    epoch = totals.get("run_training_epoch", 0.0)
    parts = {
        "data": totals.get("[_TrainingEpochLoop].train_dataloader_next", 0.0)
        + totals.get("[Strategy]SingleDeviceStrategy.batch_to_device", 0.0),
        "forward_backward_optimizer": sum(
            v for k, v in totals.items() if k.endswith((".optimizer_step", ".optimizer_zero_grad"))
        ),
    }
    for part, pattern in PARTS:
        parts[part] = sum(v for k, v in totals.items() if pattern.search(k))
    parts["data"] -= parts["degradation"]  # batch_to_device includes the degradation hook
    # the remainder; nested profiler actions can make the parts overlap, so never below 0
    parts["loop_logging_hooks"] = max(0.0, epoch - sum(parts.values()))
    return {k: round(1000 * v / max(steps, 1), 3) for k, v in parts.items()}


def bench_end_to_end(data_dir: Path, threads: int, quick: bool, log=print) -> dict:
    """Steps/s of sr-train and the plain loop, and sr-train's anatomy, per model."""
    seconds = 15 if quick else 40
    rounds = 1 if quick else 2
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    side_by_side = 2 * threads <= (usable or 1)
    out: dict = {"seconds": seconds, "threads": threads, "side_by_side": side_by_side}
    out["started"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out["load_before"] = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="sr_bench_e2e_"))
    env_data = {"SR_DATA_DIR": str(data_dir)}
    os.environ.update(env_data)
    for name, (overrides, plain_args) in MODELS.items():
        if quick and name != "espcn_x3":
            continue  # a quick run stays within minutes: the headline model only
        runs = []
        for r in range(rounds if name == "espcn_x3" else 1):
            log(f"e2e {name} round {r + 1}: sr-train and the plain loop, {seconds} s each")
            run_dir, plain_out = work / f"{name}_{r}", work / f"{name}_{r}_plain.json"
            load_before = os.getloadavg()[0]
            sr = _sr_train(overrides, seconds, run_dir, threads)
            if not side_by_side:
                _wait(sr, "sr-train")
            plain = _plain(plain_args, seconds, plain_out, threads, data_dir)
            _wait(plain, "plain loop")
            _wait(sr, "sr-train")
            p = json.loads(plain_out.read_text())
            s = sr_train_rate(run_dir)
            runs.append(
                {
                    "sr_train": s,
                    "plain": {k: p[k] for k in ("steps", "train_s", "data_s", "steps_per_s")},
                    "ratio": s["steps_per_s"] / p["steps_per_s"],
                    "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                }
            )
            log(
                f"  ratio {runs[-1]['ratio']:.3f} ({s['steps_per_s']:.1f} vs {p['steps_per_s']:.1f})"
            )
        log(f"e2e {name}: sr-train with the SimpleProfiler (anatomy)")
        prof_dir = work / f"{name}_profiled"
        profiler = [
            "trainer.profiler={_target_:lightning.pytorch.profilers.SimpleProfiler,"
            f"dirpath:'{work}',filename:{name}}}"
        ]
        _wait(_sr_train(overrides, seconds, prof_dir, threads, profiler), "profiled sr-train")
        steps = sr_train_rate(prof_dir)["steps"]
        plain = runs[-1]["plain"]
        out[name] = {
            "runs": runs,
            "ratio": statistics.median(r["ratio"] for r in runs),
            "sr_train_steps_per_s": statistics.median(r["sr_train"]["steps_per_s"] for r in runs),
            "plain_steps_per_s": statistics.median(r["plain"]["steps_per_s"] for r in runs),
            "anatomy_ms": anatomy(work / f"fit-{name}.txt", steps),
            "plain_anatomy_ms": {
                "data": round(1000 * plain["data_s"] / plain["steps"], 3),
                "forward_backward_optimizer": round(
                    1000 * (plain["train_s"] - plain["data_s"]) / plain["steps"], 3
                ),
            },
            "overrides": overrides,
        }
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def markdown(e2e: dict) -> list[str]:
    how = "side by side" if e2e["side_by_side"] else "one after the other"
    lines = [
        "### End to end (the headline figure)",
        "",
        f"Complete `sr-train` runs (DataLoader, degradation, the preset's validation cadence "
        "(ESPCN: every 5 epochs; SRResNet: every epoch, so once at the stop), checkpoints, "
        f"CSV logger, progress bar) against `scripts/plain_loop.py`, both in fp32, "
        f"{e2e['seconds']} s of "
        f"training each, {how}, {e2e['threads']} torch thread(s) each. sr-train's steps/s is "
        "`global_step` over its Timer's train time (validation included), from `last.ckpt`. "
        f"Target ≥ 0.95. Measured {e2e.get('started', '?')}; load average (1/5/15 min) "
        f"{e2e.get('load_before')} before, {e2e.get('load_after')} after (above 2, the runs "
        "shared the 2 cores with other work).",
        "",
        "| run | sr-train steps/s | plain loop steps/s | ratio | rounds (ratio, load) |",
        "|---|---|---|---|---|",
    ]
    for name in MODELS:
        r = e2e.get(name)
        if not r:
            continue
        rounds = ", ".join(
            f"{x['ratio']:.3f} ({x['load'][0]:.1f}→{x['load'][1]:.1f})" for x in r["runs"]
        )
        lines.append(
            f"| `{' '.join(r['overrides'])}` | {r['sr_train_steps_per_s']:.1f} | "
            f"{r['plain_steps_per_s']:.1f} | **{r['ratio']:.3f}** | {rounds} |"
        )
    lines += [
        "",
        "Per-step anatomy, ms (sr-train under Lightning's SimpleProfiler, which adds a little to "
        "every hook; the plain loop times its own two parts):",
        "",
        "| run | data | degradation | forward/backward/optimizer | validation | checkpoint "
        "| loop, logging, hooks |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        r = e2e.get(name)
        if not r:
            continue
        a, p = r["anatomy_ms"], r["plain_anatomy_ms"]
        lines.append(
            f"| {name} sr-train | {a['data']:.2f} | {a['degradation']:.2f} | "
            f"{a['forward_backward_optimizer']:.2f} | {a['validation']:.2f} | "
            f"{a['checkpoint']:.2f} | {a['loop_logging_hooks']:.2f} |"
        )
        lines.append(
            f"| {name} plain loop | {p['data']:.2f} | – | {p['forward_backward_optimizer']:.2f} "
            "| – | – | – |"
        )
    return lines
