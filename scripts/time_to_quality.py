#!/usr/bin/env python
"""Time to quality: Set5 (and Set14) PSNR against wall-clock training budgets.

For each budget (minutes), ``sr-train experiment=<exp> trainer.max_time=...`` and the plain
PyTorch loop (``scripts/plain_loop.py``) train side by side, one torch thread each (on a
2-core machine each gets a core: a fair, same-time comparison). sr-train's number is its
``last.ckpt`` evaluated by ``sr-eval`` on Set5 and Set14; nothing is selected on Set5.

Resumable: every finished budget is written to ``--json`` at once, and a rerun skips the
budgets already there (``--redo`` measures them again). The table and figure go into
docs/benchmarks.md (between the ttq markers) and docs/figures/time_to_quality.png.

    python scripts/time_to_quality.py --budgets 1,2,4                     # ~9 minutes
    python scripts/time_to_quality.py                                     # 1..30 min: ~70 min
    python scripts/time_to_quality.py --experiment srcnn_x3_cpu --no-plain --budgets 2,30 \
        --json benchmarks/time_to_quality_srcnn.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from sr_lightning.runtime.machine import cpu_model  # noqa: E402

PAPER = {"espcn_x3": 32.55, "srcnn_x3_cpu": 32.39}  # Set5 x3, the papers' tables
BICUBIC_SET5_X3 = 30.39


def max_time(minutes: float) -> str:
    seconds = round(minutes * 60)
    return f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def bin_path(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name


def start_sr_train(exp: str, minutes: float, run_dir: Path, extra: list[str]) -> subprocess.Popen:
    args = [
        bin_path("sr-train"),
        f"experiment={exp}",
        f"trainer.max_time={max_time(minutes)}",
        # the time budget bounds the run, not the preset's epoch count
        "trainer.max_epochs=-1",
        "resume=never",
        "extras.print_config=false",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    log = open(run_dir.with_suffix(".log"), "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=one_thread_env())


def start_plain(minutes: float, out: Path, data_dir: str) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "scripts" / "plain_loop.py"), "--minutes", str(minutes)]
    args += ["--threads", "1", "--data-dir", data_dir]
    return subprocess.Popen(args, stdout=open(out, "w"), env=one_thread_env())


def one_thread_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def evaluate(run_dir: Path) -> dict:
    """sr-eval of the run's last.ckpt on Set5 and Set14, and the step it reached."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    eval_dir = run_dir / "eval"
    subprocess.run(
        [
            bin_path("sr-eval"),
            f"ckpt_path={ckpt}",
            "data.test_sets=[Set5,Set14]",
            "extras.print_config=false",
            f"hydra.run.dir={eval_dir}",
        ],
        check=True,
        capture_output=True,
        env=one_thread_env(),
    )
    res = json.loads((eval_dir / "results.json").read_text())
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    return {
        "steps": int(state["global_step"]),
        "set5": res["Set5"]["psnr_y"],
        "set14": res["Set14"]["psnr_y"],
    }


def run_budget(args: argparse.Namespace, minutes: float) -> dict:
    run_dir = args.runs / f"{args.experiment}_{minutes:g}min"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    entry = {"minutes": minutes, "load_before": [round(x, 2) for x in os.getloadavg()]}
    entry["started"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    procs = {"sr_train": start_sr_train(args.experiment, minutes, run_dir, args.sr_args)}
    plain_out = run_dir.with_name(f"plain_{minutes:g}min.json")
    if args.plain:
        procs["plain"] = start_plain(minutes, plain_out, args.data_dir)
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{name} failed for {minutes} min; see {run_dir}.log")
    entry["load_after"] = [round(x, 2) for x in os.getloadavg()]
    entry["sr_train"] = evaluate(run_dir)
    if args.plain:
        entry["plain"] = json.loads(plain_out.read_text())
    return entry


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(results["budgets"].values(), key=lambda r: r["minutes"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    minutes = [r["minutes"] for r in rows]
    ax.plot(minutes, [r["sr_train"]["set5"] for r in rows], "o-", label=results["experiment"])
    if all("plain" in r for r in rows):
        ax.plot(minutes, [r["plain"]["set5"] for r in rows], "s--", label="plain PyTorch loop")
    paper = PAPER.get(results["experiment"])
    if paper:
        ax.axhline(paper, color="grey", lw=0.8, ls=":", label=f"paper {paper} dB")
    ax.axhline(BICUBIC_SET5_X3, color="k", lw=0.8, ls=":", label="bicubic")
    ax.set_xscale("log", base=2)
    ax.set_xticks(minutes, [f"{m:g}" for m in minutes])
    ax.set_xlabel("training budget (wall-clock minutes, 1 thread)")
    ax.set_ylabel("Set5 x3 PSNR (dB)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markers(experiment: str) -> tuple[str, str]:
    """One docs section per experiment, so the SRCNN table does not replace ESPCN's."""
    return f"<!-- ttq:{experiment}:start -->", f"<!-- ttq:{experiment}:end -->"


def markdown(results: dict, figure_path: Path) -> str:
    exp, m = results["experiment"], results["machine"]
    start, end = markers(exp)
    with_plain = all("plain" in r for r in results["budgets"].values())
    how = (
        " and the plain PyTorch loop (`scripts/plain_loop.py`: same net, batch, patches, Adam "
        "1e-3 on every layer, lr x0.1 at 80 % of the budget, LR made once per image) trained "
        "side by side for each budget, one torch thread each."
        if with_plain
        else " trained for each budget on one torch thread."
    )
    lines = [
        start,
        f"## Time to quality (`scripts/time_to_quality.py`, `experiment={exp}`)",
        "",
        f"`sr-train experiment={exp} trainer.max_time=... trainer.max_epochs=-1`{how} "
        "PSNR (Y, border 3) of sr-train's `last.ckpt` by `sr-eval`; nothing is selected on "
        "Set5, and Set14 was not used for any choice.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}, Python {m['python']}. "
        "Load average (1 min) before -> after each budget in the table: above 2 the two "
        "runs shared their cores with other work.",
        "",
        "| minutes | sr-train steps | sr-train Set5 | Set14 | plain steps | plain Set5 | Set14 "
        "| load | measured |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results["budgets"].values(), key=lambda r: r["minutes"]):
        s, p = r["sr_train"], r.get("plain", {})
        plain = [f"{p['steps']:,}", f"{p['set5']:.2f}", f"{p['set14']:.2f}"] if p else ["–"] * 3
        lines.append(
            f"| {r['minutes']:g} | {s['steps']:,} | **{s['set5']:.2f}** | {s['set14']:.2f} | "
            + " | ".join(plain)
            + f" | {r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f} | {r['started']} |"
        )
    paper = PAPER.get(exp)
    if paper:
        lines += ["", f"Paper (fully trained): Set5 x3 {paper} dB; bicubic {BICUBIC_SET5_X3} dB."]
    loads = [r["load_before"][0] for r in results["budgets"].values()]
    if max(loads, default=0) > 2:
        lines += [
            "",
            f"The machine was shared (1-minute load up to {max(loads):.1f} on 2 cores), so both "
            "runs made a fraction of their idle steps; compare the two columns of one row, and "
            "rerun on a quiet machine (`--redo`) for absolute figures.",
        ]
    rel = os.path.relpath(figure_path, ROOT / "docs")
    lines += ["", f"![time to quality]({rel})", "", end]
    return "\n".join(lines)


def write_markdown(md_path: Path, section: str, experiment: str) -> None:
    start, end = markers(experiment)
    text = md_path.read_text() if md_path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    md_path.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budgets", default="1,2,4,8,16,30", help="minutes, comma-separated")
    p.add_argument("--experiment", default="espcn_x3")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "time_to_quality.json")
    p.add_argument("--md", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--figure", type=Path, help="default docs/figures/ttq_<experiment>.png")
    p.add_argument("--runs", type=Path, default=ROOT / "logs" / "time_to_quality")
    p.add_argument("--data-dir", default=os.environ.get("SR_DATA_DIR", str(ROOT / "data")))
    p.add_argument("--no-plain", dest="plain", action="store_false", help="sr-train only")
    p.add_argument("--redo", action="store_true", help="measure budgets already in --json")
    p.add_argument("sr_args", nargs="*", help="extra sr-train overrides")
    args = p.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    args.figure = args.figure or ROOT / "docs" / "figures" / f"ttq_{args.experiment}.png"
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    if results.get("experiment") not in (None, args.experiment):
        raise SystemExit(f"{args.json} holds {results['experiment']}; pass another --json")
    results.update(experiment=args.experiment, sr_args=args.sr_args)
    results["machine"] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    results.setdefault("budgets", {})
    for minutes in budgets:
        key = f"{minutes:g}"
        if key in results["budgets"] and not args.redo:
            print(f"{key} min: already measured, skipped (--redo measures it again)")
            continue
        print(f"{key} min: training ...", flush=True)
        t0 = time.time()
        results["budgets"][key] = run_budget(args, minutes)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{key} min done in {time.time() - t0:.0f} s: {json.dumps(results['budgets'][key])}")
    figure(results, args.figure)
    write_markdown(args.md, markdown(results, args.figure), args.experiment)


if __name__ == "__main__":
    main()
