#!/usr/bin/env python
"""Time to quality: Set5 (and Set14) PSNR against wall-clock training budgets.

For each budget (minutes), ``sr-train experiment=<exp> trainer.max_time=...`` and the plain
PyTorch loop (``scripts/plain_loop.py``) train side by side, one torch thread each (on a
2-core machine each gets a core: a fair, same-time comparison); ``--threads 2`` gives each
two threads and runs them one after the other. Each precision of ``--precisions`` is such a
pair: fp32 (``trainer.precision=32-true``) and bf16 (``trainer.precision=bf16-mixed`` and
``plain_loop.py --precision bf16``), one pair after the other. sr-train's number is its
``last.ckpt`` evaluated by ``sr-eval`` (in float32) on Set5 and Set14; nothing is selected on
Set5.

Resumable: every finished pair is written to ``--json`` at once, and a rerun skips the
pairs already there (``--redo`` measures them again). The table and figure go into
docs/benchmarks.md (between the experiment's ttq markers) and docs/figures/ttq_<experiment>.png.

    python scripts/time_to_quality.py --budgets 1,2,4                     # ~20 minutes
    python scripts/time_to_quality.py                                     # 1..30 min: ~2.5 h
    python scripts/time_to_quality.py --budgets 2 --precisions bf16       # the bf16 pair only
    python scripts/time_to_quality.py --docs-only                         # table, figure: no runs
    python scripts/time_to_quality.py --experiment espcn_x2 --plain-only --budgets 30 \
        --precisions bf16 --json benchmarks/time_to_quality_espcn_x2.json  # loop beside --no-plain
    python scripts/time_to_quality.py --experiment srcnn_x3_cpu --no-plain --budgets 2,30 \
        --json benchmarks/time_to_quality_srcnn.json
    python scripts/time_to_quality.py --experiment vdsr_cpu --no-plain --budgets 30,60 \
        --precisions bf16 --json benchmarks/time_to_quality_vdsr_cpu.json  # at x2, x3, x4

Each experiment is scored at the scale its name ends in (``espcn_x2``: x2); a multi-scale
model (``vdsr_cpu``) at x2, x3 and x4, and the plain loop trains ESPCN at the same scale.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from sr_lightning.core.published import published  # noqa: E402
from sr_lightning.runtime.machine import cpu_model  # noqa: E402

# the line each experiment's figure and table are held against: (method in the built-in table of
# published results, sr_lightning/core/published.py); ESPCN x2 / x4 have no paper number and
# aim at SRCNN's as VDSR's Table 3 re-evaluates it
REFERENCE = {
    "espcn_x2": "SRCNN",
    "espcn_x3": "ESPCN",
    "espcn_x4": "SRCNN",
    "srcnn_x2_cpu": "SRCNN-915",
    "srcnn_x3_cpu": "SRCNN-915",
    "srcnn_x4_cpu": "SRCNN-915",
    "vdsr_cpu": "VDSR",
}
# a nearer goal drawn beside the paper's figure: issue 28 holds VDSR's CPU recipe against SRCNN
GOAL = {"vdsr_cpu": "SRCNN"}
# --precisions name -> (sr-train's trainer.precision, plain_loop.py's --precision, JSON suffix)
PRECISIONS = {"fp32": ("32-true", "fp32", ""), "bf16": ("bf16-mixed", "bf16", "_bf16")}


def scales_of(experiment: str) -> list[int]:
    """The scales a run is scored at: its name's ``_xN``, or x2, x3 and x4 for a multi-scale
    model such as ``vdsr_cpu``."""
    match = re.search(r"_x(\d)", experiment)
    return [int(match.group(1))] if match else [2, 3, 4]


def set5(method: str, scale: int) -> float | None:
    rows = published(method, "Set5", scale, "bicubic")
    return rows[0].psnr if rows else None


def max_time(minutes: float) -> str:
    seconds = round(minutes * 60)
    return f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def bin_path(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name


def start_sr_train(
    exp: str, minutes: float, run_dir: Path, extra: list[str], threads: int = 1
) -> subprocess.Popen:
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
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=threads_env(threads))


def start_plain(
    minutes: float,
    out: Path,
    data_dir: str,
    precision: str = "fp32",
    threads: int = 1,
    scale: int = 3,
) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "scripts" / "plain_loop.py"), "--minutes", str(minutes)]
    args += ["--threads", str(threads), "--data-dir", data_dir, "--precision", precision]
    args += ["--scale", str(scale)]
    # its result (JSON) on stdout, its errors beside it: the log a failure message names
    stdout, stderr = open(out, "w"), open(out.with_suffix(".log"), "w")  # noqa: SIM115
    return subprocess.Popen(args, stdout=stdout, stderr=stderr, env=threads_env(threads))


def plain_output(args: argparse.Namespace, minutes: float, suffix: str) -> Path:
    """The plain loop's result file, named by experiment too: ESPCN x2 and x4 loops of one
    budget may run at once."""
    return args.runs / f"{args.experiment}_plain_{minutes:g}min{suffix}.json"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def utc_minute() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def threads_env(threads: int = 1) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def evaluate(run_dir: Path, scales: list[int]) -> dict:
    """sr-eval of the run's last.ckpt on Set5 and Set14, and the step it reached. One scale:
    ``set5`` / ``set14``; several (one multi-scale model): those keys under ``x2``, ``x3``..."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    out: dict = {"steps": int(state["global_step"])}
    for scale in scales:
        eval_dir = run_dir / (f"eval_x{scale}" if len(scales) > 1 else "eval")
        subprocess.run(
            [
                bin_path("sr-eval"),
                f"ckpt_path={ckpt}",
                "data.test_sets=[Set5,Set14]",
                "extras.print_config=false",
                f"hydra.run.dir={eval_dir}",
                *([f"scale={scale}"] if len(scales) > 1 else []),
            ],
            check=True,
            capture_output=True,
            env=threads_env(),
        )
        res = json.loads((eval_dir / "results.json").read_text())
        scores = {"set5": res["Set5"]["psnr_y"], "set14": res["Set14"]["psnr_y"]}
        if len(scales) == 1:
            out.update(scores)
        else:
            out[f"x{scale}"] = scores
    return out


def side_by_side(threads: int) -> bool:
    """Both trainings at once when the machine has a core for each of their threads."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 * threads <= (usable or 1)


def run_pair(args: argparse.Namespace, minutes: float, precision: str) -> dict:
    """sr-train and the plain loop for one budget in one precision; the entry's keys for it
    (``sr_train``, ``plain``, ``load_before``, ... with the precision's suffix: ``_bf16``)."""
    lightning, plain_precision, suffix = PRECISIONS[precision]
    run_dir = args.runs / f"{args.experiment}_{minutes:g}min{suffix}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    set_aside(run_dir)
    out = {f"load_before{suffix}": load_average(), f"started{suffix}": utc_minute()}
    sr_args = [*args.sr_args, f"trainer.precision={lightning}"]
    procs = {"sr_train": start_sr_train(args.experiment, minutes, run_dir, sr_args, args.threads)}
    plain_out = plain_output(args, minutes, suffix)
    logs = {"sr_train": run_dir.with_suffix(".log"), "plain": plain_out.with_suffix(".log")}
    if args.plain:
        if not side_by_side(args.threads):
            wait(procs.pop("sr_train"), "sr_train", minutes, logs["sr_train"])
        procs["plain"] = start_plain(
            minutes,
            plain_out,
            args.data_dir,
            plain_precision,
            args.threads,
            scales_of(args.experiment)[0],
        )
    for name, proc in procs.items():
        wait(proc, name, minutes, logs[name])
    out[f"load_after{suffix}"] = load_average()
    out[f"sr_train{suffix}"] = evaluate(run_dir, scales_of(args.experiment))
    if args.plain:
        out[f"plain{suffix}"] = json.loads(plain_out.read_text())
    return out


def set_aside(run_dir: Path) -> None:
    """A budget measured again (``--redo``, or after a run that stopped before it was stored)
    trains in a fresh run dir: the earlier run's dir and log are renamed, not deleted, so its
    checkpoints and evaluation neither mix with the new run's nor stop sr-eval, which will not
    overwrite an earlier results.json."""
    if not run_dir.exists():
        return
    stamp = datetime.fromtimestamp(run_dir.stat().st_mtime, timezone.utc).strftime("%Y%m%dT%H%M")
    for path in (run_dir, run_dir.with_suffix(".log")):
        if path.exists():
            path.rename(path.with_name(f"{run_dir.name}.before-{stamp}{path.suffix}"))


def run_plain_alone(args: argparse.Namespace, minutes: float, precision: str) -> dict:
    """The plain loop alone, for a budget whose sr-train run is already stored without it
    (measured with ``--no-plain``): its scores, with when it ran and the load around it, kept
    inside its own entry since the pair's ``started`` and loads are sr-train's."""
    _, plain_precision, suffix = PRECISIONS[precision]
    out_path = plain_output(args, minutes, suffix)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    load_before, started = load_average(), utc_minute()
    scale = scales_of(args.experiment)[0]
    proc = start_plain(minutes, out_path, args.data_dir, plain_precision, args.threads, scale)
    wait(proc, "plain", minutes, out_path.with_suffix(".log"))
    plain = json.loads(out_path.read_text())
    plain.update(started=started, load_before=load_before, load_after=load_average())
    return {f"plain{suffix}": plain}


def measure(args: argparse.Namespace, entry: dict, precision: str) -> dict | None:
    """One budget's runs in one precision, or None where the store has them (or, for
    ``--plain-only``, lacks the sr-train run the loop would stand beside)."""
    key, sfx = f"{entry['minutes']:g}", PRECISIONS[precision][2]
    wanted = f"plain{sfx}" if args.plain_only else f"sr_train{sfx}"
    if wanted in entry and not args.redo:
        print(f"{key} min {precision}: already measured, skipped (--redo measures again)")
        return None
    if args.plain_only and f"sr_train{sfx}" not in entry:
        print(
            f"{key} min {precision}: no sr-train run stored to stand beside; run without "
            "--plain-only first"
        )
        return None
    print(f"{key} min {precision}: training ...", flush=True)
    run = run_plain_alone if args.plain_only else run_pair
    return run(args, entry["minutes"], precision)


def wait(proc: subprocess.Popen, name: str, minutes: float, log: Path) -> None:
    if proc.wait() != 0:
        raise SystemExit(f"{name} failed for {minutes:g} min; see {log}")


def scores(run: dict, scale: int, scales: list[int]) -> dict:
    """One run's Set5 / Set14 at a scale (a multi-scale run keeps them under ``x<scale>``)."""
    return run if len(scales) == 1 else run[f"x{scale}"]


def figure(results: dict, path: Path) -> None:
    """Set5 PSNR against the budget, one panel per scale, with the reference and bicubic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exp = results["experiment"]
    scales = scales_of(exp)
    rows = sorted(results["budgets"].values(), key=lambda r: r["minutes"])
    fig, axes = plt.subplots(1, len(scales), figsize=(4 + 2 * len(scales), 3.6), squeeze=False)
    minutes = [r["minutes"] for r in rows]
    for scale, ax in zip(scales, axes[0], strict=True):
        for suffix, colour, tag in (("", "C0", ""), ("_bf16", "C1", " bf16")):
            for key, style, label in (
                (f"sr_train{suffix}", "o-", exp),
                (f"plain{suffix}", "s--", "plain PyTorch loop"),
            ):
                done = [r for r in rows if key in r]
                if done:
                    ax.plot(
                        [r["minutes"] for r in done],
                        [scores(r[key], scale, scales)["set5"] for r in done],
                        style,
                        color=colour,
                        label=label + tag,
                    )
        for method, style in ((REFERENCE.get(exp), ":"), (GOAL.get(exp), "--")):
            paper = set5(method, scale) if method else None
            if paper:
                ax.axhline(paper, color="grey", lw=0.8, ls=style, label=f"{method} {paper} dB")
        ax.axhline(set5("bicubic", scale), color="k", lw=0.8, ls=":", label="bicubic")
        ax.set_xscale("log", base=2)
        ax.set_xticks(minutes, [f"{m:g}" for m in minutes])
        ax.set_ylabel(f"Set5 x{scale} PSNR (dB)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    label = f"training budget (wall-clock minutes, {thread_words(results.get('threads', 1))})"
    (axes[0][0].set_xlabel if len(scales) == 1 else fig.supxlabel)(label)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markers(experiment: str) -> tuple[str, str]:
    """One docs section per experiment, so the SRCNN table does not replace ESPCN's."""
    return f"<!-- ttq:{experiment}:start -->", f"<!-- ttq:{experiment}:end -->"


def cells(run: dict | None, scales: list[int]) -> list[str]:
    """steps, then Set5 and Set14 at each scale of one training, or dashes where it was not
    run; Set5 in bold for sr-train."""
    if not run:
        return ["–"] * (1 + 2 * len(scales))
    out = [f"{run['steps']:,}"]
    for scale in scales:
        score = scores(run, scale, scales)
        out += [f"{score['set5']:.2f}", f"{score['set14']:.2f}"]
    return out


def measured_precisions(results: dict) -> list[str]:
    """The precisions any budget holds, fp32 first: the table's column groups."""
    rows = results["budgets"].values()
    return [p for p, (*_, sfx) in PRECISIONS.items() if any(f"sr_train{sfx}" in r for r in rows)]


def loads_of(r: dict, precisions: list[str]) -> tuple[str, list[float]]:
    """The load cell (1-minute load before -> after each pair) and the loads before."""
    parts, before = [], []
    for precision in precisions:
        sfx = PRECISIONS[precision][2]
        if f"load_before{sfx}" in r:
            b, a = r[f"load_before{sfx}"][0], r[f"load_after{sfx}"][0]
            parts.append(
                f"{precision} {b:.1f} -> {a:.1f}" if len(precisions) > 1 else f"{b:.1f} -> {a:.1f}"
            )
            before.append(b)
    return "; ".join(parts), before


def thread_words(threads: int) -> str:
    return "one torch thread" if threads == 1 else f"{threads} torch threads"


def markdown(results: dict, figure_path: Path) -> str:
    exp, m = results["experiment"], results["machine"]
    start, end = markers(exp)
    precisions = measured_precisions(results)
    threads = results.get("threads", 1)
    with_plain = all(
        f"plain{PRECISIONS[p][2]}" in r
        for r in results["budgets"].values()
        for p in precisions
        if f"sr_train{PRECISIONS[p][2]}" in r
    )
    any_plain = any(k.startswith("plain") for r in results["budgets"].values() for k in r)
    scales = scales_of(exp)
    how = (
        " and the plain PyTorch loop (`scripts/plain_loop.py`: same net, batch, patches, Adam "
        "1e-3 on every layer, lr x0.1 at 80 % of the budget, LR made once per image) trained "
        + (
            f"side by side for each budget, {thread_words(threads)} each."
            if side_by_side(threads)
            else f"one after the other for each budget, {thread_words(threads)} each."
        )
        + ("" if with_plain else " A dash in the plain columns: sr-train ran alone.")
        if any_plain
        else f" trained for each budget on {thread_words(threads)}."
    )
    bf16 = (
        " bf16 columns: `trainer.precision=bf16-mixed`"
        + (" and `plain_loop.py --precision bf16`" if any_plain else "")
        + " (bfloat16 autocast of forward and loss, fp32 weights and Adam)"
        + "; `sr-eval` scores every checkpoint in float32."
        if "bf16" in precisions
        else ""
    )
    header, rule = ["minutes"], ["---"]
    at = [f" x{scale}" if len(scales) > 1 else "" for scale in scales]
    for precision in precisions:
        tag = "" if precision == "fp32" else f"{precision} "
        for side, shown in (("sr-train", True), ("plain", any_plain)):
            if shown:
                header += [f"{tag}{side} steps"]
                header += [h for x in at for h in (f"{tag}{side} Set5{x}", f"Set14{x}")]
    header += ["load", "measured"]
    rule = ["---"] * len(header)
    lines = [
        start,
        f"## Time to quality (`scripts/time_to_quality.py`, `experiment={exp}`)",
        "",
        f"`sr-train experiment={exp} trainer.max_time=... trainer.max_epochs=-1`{how} "
        f"PSNR (Y, border {'= scale' if len(scales) > 1 else scales[0]}) of sr-train's `last.ckpt` by `sr-eval`; nothing is selected on "
        f"Set5, and Set14 was not used for any choice.{bf16}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}, Python {m['python']}. "
        "Load average (1 min) before -> after each run: a training holds a core per thread, "
        "so 2 is this 2-core machine filled by benchmark runs; above 2, other work shared "
        "the cores.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(rule) + "|",
    ]
    all_loads: list[float] = []
    for r in sorted(results["budgets"].values(), key=lambda r: r["minutes"]):
        row = [f"{r['minutes']:g}"]
        for precision in precisions:
            sfx = PRECISIONS[precision][2]
            s = cells(r.get(f"sr_train{sfx}"), scales)
            if f"sr_train{sfx}" in r:
                s[1::2] = [f"**{c}**" for c in s[1::2]]
            row += s + (cells(r.get(f"plain{sfx}"), scales) if any_plain else [])
        load, before = loads_of(r, precisions)
        all_loads += before
        started = "; ".join(
            (f"{p} " if len(precisions) > 1 else "") + r[f"started{PRECISIONS[p][2]}"]
            for p in precisions
            if f"started{PRECISIONS[p][2]}" in r
        )
        lines.append("| " + " | ".join([*row, load, started]) + " |")
    reference = REFERENCE.get(exp)
    if reference:
        methods = [reference, *([GOAL[exp]] if exp in GOAL else []), "bicubic"]
        held = "; ".join(
            f"Set5 x{scale}: " + ", ".join(f"{m} {set5(m, scale)} dB" for m in methods)
            for scale in scales
        )
        lines += ["", f"Held against (fully trained, `core/published.py`): {held}."]
    if max(all_loads, default=0) > 2.5:  # 2: this machine's two cores, each a run's
        lines += [
            "",
            f"The machine was shared (1-minute load up to {max(all_loads):.1f} on 2 cores), so "
            "the runs made a fraction of their idle steps; compare the columns of one pair, and "
            "rerun on a quiet machine (`--redo`) for absolute figures.",
        ]
    lines += apart(results)
    rel = os.path.relpath(figure_path, ROOT / "docs")
    lines += ["", f"![time to quality]({rel})", "", end]
    return "\n".join(lines)


def apart(results: dict) -> list[str]:
    """A sentence for plain loops run on their own (``--plain-only``): their steps came at
    another time, beside other work, so they are no same-time ratio against sr-train's."""
    runs = [
        (r["minutes"], precision, r[f"plain{sfx}"])
        for r in sorted(results["budgets"].values(), key=lambda r: r["minutes"])
        for precision, (*_, sfx) in PRECISIONS.items()
        if "started" in r.get(f"plain{sfx}", {})
    ]
    if not runs:
        return []
    said = "; ".join(
        f"{minutes:g} min {precision} (started {run['started']}, load "
        f"{run['load_before'][0]:.1f} -> {run['load_after'][0]:.1f})"
        for minutes, precision, run in runs
    )
    return [
        "",
        f"The plain loop ran apart from sr-train at {said}: its scores stand beside "
        "sr-train's, but its steps are no same-time comparison.",
    ]


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
    p.add_argument(
        "--plain-only",
        action="store_true",
        help="the plain loop alone, beside sr-train runs stored without it (--no-plain)",
    )
    p.add_argument(
        "--precisions", default="fp32,bf16", help="fp32 and/or bf16: one pair of runs each"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads of each training")
    p.add_argument(
        "--docs-only",
        action="store_true",
        help="train nothing: rewrite the table and figure from --json (a plain rerun would "
        "measure every budget and precision missing from it)",
    )
    p.add_argument("sr_args", nargs="*", help="extra sr-train overrides")
    args = p.parse_args()
    if args.plain_only and not args.plain:
        raise SystemExit("--plain-only and --no-plain exclude each other: choose one")
    budgets = [float(b) for b in args.budgets.split(",")]
    precisions = args.precisions.split(",")
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise SystemExit(f"--precisions {','.join(unknown)}: choose from fp32, bf16")
    args.figure = args.figure or ROOT / "docs" / "figures" / f"ttq_{args.experiment}.png"
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    if results.get("experiment") not in (None, args.experiment):
        raise SystemExit(f"{args.json} holds {results['experiment']}; pass another --json")
    if args.docs_only:  # the store describes the runs in it; this call measures nothing
        if not results.get("budgets"):
            raise SystemExit(f"--docs-only: {args.json} holds no measured budget; run without it")
        figure(results, args.figure)
        write_markdown(args.md, markdown(results, args.figure), args.experiment)
        return
    if results.get("budgets") and results.get("threads", 1) != args.threads:
        raise SystemExit(
            f"{args.json} was measured with {results.get('threads', 1)} thread(s), not "
            f"{args.threads}; pass another --json"
        )
    results.update(experiment=args.experiment, sr_args=args.sr_args, threads=args.threads)
    results["machine"] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    results.setdefault("budgets", {})
    for minutes in budgets:
        key = f"{minutes:g}"
        for precision in precisions:
            entry = results["budgets"].get(key, {"minutes": minutes})
            t0 = time.time()
            pair = measure(args, entry, precision)
            if pair is None:
                continue
            entry.update(pair)
            results["budgets"][key] = entry
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{key} min {precision} done in {time.time() - t0:.0f} s: {json.dumps(pair)}")
    if not results["budgets"]:  # --plain-only on a store with no sr-train run: no empty table
        raise SystemExit(
            f"{args.json} holds no sr-train run to stand beside; run without --plain-only first"
        )
    figure(results, args.figure)
    write_markdown(args.md, markdown(results, args.figure), args.experiment)


if __name__ == "__main__":
    main()
