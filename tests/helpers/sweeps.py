"""Running sr-train as a command line and reading the sweep dirs it makes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> tuple[int, str]:
    """``python -m sr_lightning.apps.train ARGS`` in ``cwd``; on timeout its whole process group
    (DDP ranks, submitit jobs) is killed, so a hang fails the test instead of the CI job."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    flags = [a for a in args if a.startswith("-")]  # Hydra wants them before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sr_lightning.apps.train",
            *flags,
            "extras.print_config=false",
            *overrides,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


def only_sweep_dir(root: Path) -> Path:
    """The single sweep dir under ``root/logs``; no single-run dir may exist beside it."""
    assert not (root / "logs" / "train" / "runs").exists()
    sweeps = list((root / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def read_summary(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))
