"""What the LR settings (``degradation=``) cost per training batch, and what share of the
training step they feed that is.

* ``bicubic``, ``bd`` and ``dn`` on ESPCN x3's batches: 16 HR patches of 51 px, kept in RGB
  (BD / DN are defined on RGB) and turned into the luma LR / HR pair the luma net trains on;
* ``realesrgan`` on 16 RGB HR patches of 256 px feeding SRResNet x4 (RGB, 16 blocks).

The step is the net's forward, MSE loss, backward and Adam update on that batch; the share is
degradation / (degradation + step). Times are medians over ``--repeats`` after a warm-up, with
the machine's load average before and after (other jobs inflate them).

    python scripts/bench_degradations.py [--repeats 5] [--threads 2] [--md docs/benchmarks.md]

With ``--md`` the table replaces the ``degradations`` section of that file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from sr_lightning.core.config import CONF_DIR, register_resolvers
from sr_lightning.core.derived import net_config
from sr_lightning.data.degradations.model import Degradation
from sr_lightning.data.degradations.seeded import luma_of

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- degradations:start -->", "<!-- degradations:end -->"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    # warm-up: the first calls of a shape are several times slower (kernel selection,
    # resize weights); 3 calls and at least a second
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < 1.0:
        fn()
        calls += 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def build_net(model: str, scale: int, channels: int) -> torch.nn.Module:
    register_resolvers()
    net = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml").net)
    return hydra.utils.instantiate(net_config(net, scale, channels))


def step_fn(net: torch.nn.Module, lr: torch.Tensor, hr: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(lr), hr).backward()
        optimizer.step()

    return step


def measure(name: str, model: str, scale: int, patch: int, channels: int, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    hr = torch.rand(16, 3, patch, patch, generator=gen)  # RGB: what BD / DN / Real-ESRGAN take
    degradation = Degradation.from_config({"name": name})
    seeds = list(range(16))

    if degradation.needs_rgb or channels == 3:

        def degrade() -> tuple[torch.Tensor, torch.Tensor]:
            lr = degradation.train_lr(hr, scale, seeds)
            return (luma_of(hr), luma_of(lr)) if channels == 1 else (hr, lr)

    else:  # bicubic: a luma model's sets are luma already
        luma = luma_of(hr)

        def degrade() -> tuple[torch.Tensor, torch.Tensor]:
            return luma, degradation.train_lr(luma, scale, seeds)

    degrade_ms = median_ms(degrade, repeats)
    target, lr = degrade()
    step_ms = median_ms(step_fn(build_net(model, scale, channels), lr, target), repeats)
    return {
        "degradation": name,
        "model": f"{model} x{scale}",
        "batch": f"16 {'RGB -> luma' if channels == 1 and degradation.needs_rgb else 'luma' if channels == 1 else 'RGB'} {patch} px HR",
        "degradation_ms": degrade_ms,
        "step_ms": step_ms,
        "share": degrade_ms / (degrade_ms + step_ms),
    }


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        START,
        "## Degradation cost per training batch (`scripts/bench_degradations.py`)",
        "",
        f"{meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}; load average "
        f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after (other jobs on the "
        f"machine), median of {meta['repeats']} after a warm-up (3 calls and 1 s at least). Share = degradation / "
        "(degradation + the net's forward, loss, backward and Adam step on that batch). "
        "Before the FFT-length fix of the blur, Real-ESRGAN took about 1.0 s for this batch "
        "against 0.7 s after, in one process, interleaved, on the same loaded machine.",
        "",
        "| degradation | batch | feeds | degradation ms | step ms | share |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['degradation']}` | {r['batch']} | {r['model']} | "
            f"{r['degradation_ms']:.1f} | {r['step_ms']:.1f} | {100 * r['share']:.1f} % |"
        )
    return "\n".join([*lines, END])


def write_section(md_path: Path, section: str) -> None:
    text = md_path.read_text() if md_path.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = md_path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, md_path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--md", type=Path, help="replace the degradations section of this file")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "degradations.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = [measure(name, "espcn", 3, 51, 1, args.repeats) for name in ("bicubic", "bd", "dn")]
    rows.append(measure("realesrgan", "srresnet", 4, 256, 3, args.repeats))
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    print(json.dumps({"meta": meta, "rows": rows}, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    if args.md:
        write_section(args.md, markdown(rows, meta))


if __name__ == "__main__":
    main()
