"""Start-up latency of the apps: how long a config error takes to report, and how long
``sr-train`` takes from launch to its first training step (imports, config, data setup).

Run ``python scripts/bench_startup.py [--label before]``; it prints a JSON record and, with
``--markdown``, a table row for docs/benchmarks.md. The first-step clock is a callback added
by override (``+callbacks.first_step``) that prints the seconds since the parent launched it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BAD_VALUES = [
    "data.batch_size=0",
    "scale=abc",
    "model.optimizer.lr=-1",
    "model.optimizer.lr=abc",
    "trainer.max_epochs=ten",
    "trainer.max_steps=-5",
    "seed=abc",
    "+data.blur_sigma=1.6",
]

PROBE = """
import os, time
from lightning.pytorch import Callback

class FirstStepClock(Callback):
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 0:
            print(f"FIRST_STEP {time.time() - float(os.environ['SR_BENCH_T0']):.3f}", flush=True)
"""


def sr_train() -> str:
    return str(Path(sys.executable).with_name("sr-train"))


def time_error(override: str, run_dir: Path) -> dict:
    start = time.time()
    proc = subprocess.run(
        [sr_train(), override, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    out = (proc.stdout + proc.stderr).strip().splitlines()
    return {
        "override": override,
        "seconds": round(time.time() - start, 2),
        "lines": len(out),
        "rc": proc.returncode,
    }


def time_first_step(tmp: Path) -> float:
    probe_dir = tmp / "probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    (probe_dir / "sr_bench_probe.py").write_text(PROBE)
    env = {
        **os.environ,
        "PYTHONPATH": f"{probe_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SR_BENCH_T0": repr(time.time()),
    }
    proc = subprocess.run(
        [
            sr_train(),
            "trainer.max_steps=2",
            "trainer.enable_progress_bar=false",
            "extras.print_config=false",
            "+callbacks.first_step._target_=sr_bench_probe.FirstStepClock",
            f"hydra.run.dir={tmp / 'run'}",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("FIRST_STEP "):
            return float(line.split()[1])
    raise RuntimeError(f"no first step seen:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", default="now")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        errors = [time_error(o, tmp / f"err{i}") for i, o in enumerate(BAD_VALUES)]
        first = [time_first_step(tmp / f"fs{i}") for i in range(args.runs)]
    record = {
        "label": args.label,
        "load_1min": round(load, 2),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "errors": errors,
        "first_step_s": {"median": round(statistics.median(first), 2), "runs": first},
    }
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
