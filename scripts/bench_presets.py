#!/usr/bin/env python
"""Where each paper preset gets on this machine in N minutes: Set5 PSNR from last.ckpt.

    SR_DATA_DIR=/path/to/data python scripts/bench_presets.py --minutes 5
    python scripts/bench_presets.py --minutes 3 --presets vdsr --threads 2 --no-md

Each preset trains with ``sr-train experiment=<preset> trainer.max_time=<N min>`` (the
preset's own optimizer, batch, patches and schedule; ``trainer.min_epochs=0`` so that the
time limit may end the first epoch), then its ``last.ckpt`` (the state when time ran out,
not the best-on-Set5 checkpoint: Set5 is a report, not a model selector) is evaluated on
Set5 at the preset's scale with the base module's validation loop. When DIV2K is absent,
``srresnet_x4`` trains on T91 in RGB instead and the table says so.

The table goes into ``docs/benchmarks.md`` between ``<!-- presets:start -->`` and
``<!-- presets:end -->`` (the file and section are created if missing; nothing outside the
markers is touched); ``--json`` also writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

START, END = "<!-- presets:start -->", "<!-- presets:end -->"
DEFAULT_PRESETS = ("srcnn_x3", "vdsr", "srresnet_x4")
# The CPU recipes of docs/methods.md: a preset plus overrides that make minutes count on a CPU.
CPU_RECIPES = {
    "srcnn_x3@cpu": ("srcnn_x3_cpu", []),
    "vdsr@cpu": ("vdsr_cpu", []),
    "srresnet_x4@cpu": ("srresnet_x4", ["model.patch_hr=48"]),
}
# Set5 PSNR (Y) the papers report after full training, at the preset's validation scale.
PAPER_SET5 = {
    "srcnn_x3": "32.39 (9-1-5, ECCV'14) / 32.75 (9-5-5, TPAMI'16)",
    "vdsr": "33.66 (x3; 37.53 x2, 31.35 x4)",
    "srresnet_x4": "32.05",
    "espcn_x3": "32.55",
    "espcn_x2": "-",
    "espcn_x4": "-",
}


def resolve_preset(name: str) -> tuple[str, list[str]]:
    """A preset name, or a CPU recipe name -> (preset, extra overrides)."""
    if name in CPU_RECIPES:
        preset, overrides = CPU_RECIPES[name]
        return preset, list(overrides)
    if not (ROOT / "conf" / "experiment" / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
        raise SystemExit(
            f"unknown preset {name!r}; presets: {known}; recipes: {sorted(CPU_RECIPES)}"
        )
    return name, []


def fallback_overrides(preset: str, data_dir: Path) -> tuple[list[str], str]:
    """Overrides for data this machine lacks, and the note saying what ran instead."""
    if preset == "srresnet_x4" and not (data_dir / "DIV2K_train_HR").is_dir():
        return ["data=t91", "channels=3"], "T91, RGB (DIV2K absent)"
    return [], ""


def train_preset(
    preset: str, minutes: float, run_dir: Path, overrides: list[str], threads: int | None
) -> float:
    """Run sr-train for `minutes`; returns wall seconds (start-up and final validation included)."""
    seconds = max(1, round(minutes * 60))
    cmd = [
        sys.executable,
        "-m",
        "sr_lightning.apps.train",
        f"experiment={preset}",
        "trainer=cpu",
        f"trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}",
        "trainer.min_epochs=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "extras.print_config=false",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{preset}: sr-train failed (exit {proc.returncode}); see {log}")
    return time.monotonic() - start


def evaluate_on_set5(ckpt_path: Path, data_dir: Path, threads: int | None) -> dict:
    """Set5 PSNR/SSIM of a checkpoint through the base module's validation loop."""
    import torch
    from hydra.utils import get_class
    from lightning.pytorch import Trainer

    from sr_lightning.data.datamodule import SRDataModule
    from sr_lightning.modules.base import CHECKPOINT_KEY

    if threads:
        torch.set_num_threads(threads)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    module_path = ckpt[CHECKPOINT_KEY]["module"]
    if not module_path.startswith("sr_lightning."):
        raise ValueError(f"{ckpt_path}: unexpected module class {module_path}")
    module = get_class(module_path)(**ckpt["hyper_parameters"])
    module.load_state_dict(ckpt["state_dict"])
    data = SRDataModule(
        data_dir=str(data_dir),
        train_sets=[],
        val_sets=["Set5"],
        scale=module.scale,
        channels=module.channels,
        patch_size=module.scale,
    )
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (metrics,) = trainer.validate(module, datamodule=data, verbose=False)
    return {
        "psnr": metrics["val/psnr"],
        "ssim": metrics["val/ssim"],
        "bicubic": metrics["val/psnr_bicubic"],
        "scale": module.scale,
        "channels": module.channels,
        "steps": int(ckpt.get("global_step", 0)),
        "epochs": int(ckpt.get("epoch", 0)),
    }


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def markdown(rows: list[dict], minutes: float, machine: str) -> str:
    lines = [
        f"## Paper presets after {minutes:g} minutes of CPU training",
        "",
        f"`python scripts/bench_presets.py --minutes {minutes:g}` on {machine}. Each preset trains "
        "with its own settings for the wall time shown, then its `last.ckpt` is evaluated on "
        "Set5 (Y channel, border = scale, 8-bit output) at the preset's scale. These are "
        "minutes, not the papers' days: the numbers show how far a run gets, not what a "
        "method reaches.",
        "",
        "| preset | trained on | steps (batch) | Set5 PSNR / SSIM | bicubic | gain | paper, fully trained |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['preset']}` | {r['data']} | {r['steps']} ({r['batch']}) | "
            f"{r['psnr']:.2f} / {r['ssim']:.4f} (x{r['scale']}) | {r['bicubic']:.2f} | "
            f"{r['psnr'] - r['bicubic']:+.2f} | {PAPER_SET5.get(r['preset'].split('@')[0], '-')} |"
        )
    recipes = [r for r in rows if r["overrides"]]
    if recipes:
        lines += ["", "CPU recipes (docs/methods.md) are the preset plus these overrides:", ""]
        lines += [f"- `{r['preset']}`: `{' '.join(r['overrides'])}`" for r in recipes]
    loads = ", ".join(f"`{r['preset']}` {r['load_before']} -> {r['load_after']}" for r in rows)
    lines += [
        "",
        f"Load average (1/5/15 min) before -> after each run: {loads}. The machine is shared "
        "with other jobs, so a run gets a varying share of its cores and the step counts above "
        "vary from run to run; compare presets by their step counts, not only their PSNR.",
        f"Measured {rows[-1]['measured_utc'] if rows else '-'} UTC.",
    ]
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace the text between the markers (or append the section); atomic rename."""
    section = f"{START}\n{body}\n{END}"
    text = path.read_text() if path.exists() else ""
    if START in text and END in text and text.index(START) < text.index(END):
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    elif START in text or END in text:
        raise ValueError(f"{path}: only one of {START} / {END} is present; fix the file by hand")
    else:
        if not text:
            text = "# Benchmarks\n"
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, path.stat().st_mode & 0o777 if path.exists() else 0o644)
    os.replace(tmp.name, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training time per preset")
    parser.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS))
    parser.add_argument("--threads", type=int, default=None, help="OMP/torch threads per run")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("SR_DATA_DIR"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-md", action="store_true", help="do not touch the markdown file")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="run dirs (default: a temp dir)"
    )
    parser.add_argument(
        "--from-json", type=Path, default=None, help="rewrite the table from a --json file only"
    )
    args = parser.parse_args(argv)

    if args.from_json:
        rows = json.loads(args.from_json.read_text())
        body = markdown(
            rows, args.minutes, f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)"
        )
        print(body)
        if not args.no_md:
            write_section(args.out, body)
        return 0
    if args.data_dir is None or not (Path(args.data_dir) / "Set5").is_dir():
        parser.error("set SR_DATA_DIR (or --data-dir) to a folder holding Set5 and T91")
    data_dir = Path(args.data_dir).resolve()
    os.environ["SR_DATA_DIR"] = str(data_dir)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_presets_"))
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)"

    rows = []
    for name in args.presets:
        preset, recipe = resolve_preset(name)
        fallback, note = fallback_overrides(preset, data_dir)
        overrides = fallback + recipe
        run_dir = work / name.replace("@", "_")
        load_before = load_average()
        print(f"[{name}] training {args.minutes:g} min: {' '.join(overrides)}", flush=True)
        wall = train_preset(preset, args.minutes, run_dir, overrides, args.threads)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise RuntimeError(f"{name}: no {ckpt} (see {run_dir}.log)")
        result = evaluate_on_set5(ckpt, data_dir, args.threads)
        run_cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        row = {
            "preset": name,
            "overrides": recipe,
            "data": note or data_label(run_cfg),
            "batch": run_cfg.data.batch_size,
            "wall_s": round(wall, 1),
            "load_before": load_before,
            "load_after": load_average(),
            "measured_utc": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}",
            **result,
        }
        rows.append(row)
        print(
            f"[{name}] Set5 x{row['scale']}: {row['psnr']:.2f} dB "
            f"(bicubic {row['bicubic']:.2f}) after {row['steps']} steps, {wall:.0f} s wall",
            flush=True,
        )

    body = markdown(rows, args.minutes, machine)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if not args.no_md:
        write_section(args.out, body)
        print(f"wrote {args.out} (between {START} and {END})")
    return 0


def data_label(run_cfg) -> str:
    """Training set and colour space of a run, from its saved config."""
    name = {"t91": "T91", "291": "291 (T91 + BSD200)", "div2k": "DIV2K"}.get(
        str(run_cfg.data.name), str(run_cfg.data.name)
    )
    scales = run_cfg.data.get("scales")
    multi = f", x{'/'.join(map(str, scales))}" if scales else ""
    return f"{name}, {'luma' if run_cfg.channels == 1 else 'RGB'}{multi}"


if __name__ == "__main__":
    raise SystemExit(main())
