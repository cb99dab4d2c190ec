"""The SLURM preset against a real SLURM: a single-node cluster on 127.0.0.1 (Debian's
slurm-wlm and munge, started by :mod:`tests.helpers.slurm_cluster`), two seeded jobs submitted through
submitit, one preempted mid-epoch with ``scontrol requeue``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.config import tiny_overrides
from tests.helpers.resume import RUN, assert_same
from tests.helpers.slurm_cluster import SlurmUnavailable, local_slurm
from tests.helpers.sweeps import job_dirs, read_summary

REPO = Path(__file__).resolve().parents[1]
SWEEP_TIMEOUT_S = 150


@pytest.fixture
def slurm(tmp_path):
    """The running cluster's client environment; a cluster that cannot start fails the test."""
    try:
        with local_slurm(tmp_path / "slurm") as env:
            yield env
    except SlurmUnavailable as err:
        pytest.fail(f"the local SLURM did not start: {err}")


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.is_file() or not path.read_text().strip():
        assert proc.poll() is None, f"the sweep ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.2)
    return path.read_text().strip()


def test_a_cluster_that_cannot_start_says_why(tmp_path, monkeypatch):
    """No slurm-wlm on PATH: one error naming the missing programs and the package to install
    (the fixture turns it into a test failure, never a skip)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    cluster = local_slurm(tmp_path / "slurm")
    with pytest.raises(SlurmUnavailable, match=r"slurmctld.*apt-get install slurm-wlm munge"):
        cluster.__enter__()


@pytest.mark.slow
def test_a_requeued_slurm_job_resumes_its_run_and_ends_identical(slurm, tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    # 12 steps an epoch, 2 epochs, last.ckpt every 4 steps; job 0 waits at step 6 to be requeued
    job = [*tiny_overrides(tiny_data), *RUN, "logger=wandb"]
    env = {**slurm, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sr_lightning.apps.train", "-m", "hydra/launcher=slurm",
         "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
         f"hydra.sweep.dir={sweep}", *job, "seed=7,8",
         "+callbacks.requeue._target_=tests.helpers.kill_switch.WaitForRequeue",
         "+callbacks.requeue.step=6", "+callbacks.requeue.run_dir=${paths.output_dir}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        job_id = _wait_for(sweep / "0" / "requeue_me", proc, SWEEP_TIMEOUT_S)
        periodic = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=True)
        assert periodic["global_step"] == 4  # its first periodic last.ckpt, mid-epoch
        requeue = subprocess.run(
            ["scontrol", "requeue", job_id], env=slurm, capture_output=True, text=True, timeout=30
        )
        assert requeue.returncode == 0, requeue.stderr
        out, _ = proc.communicate(timeout=SWEEP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, out[-3000:]
    jobs = job_dirs(sweep)
    assert len(jobs) == 2 and {row["status"] for row in read_summary(sweep)} == {"completed"}
    # the requeued job was the same SLURM job, rerun in its own dir, resumed from its last.ckpt
    logs = {p.name: p.read_text() for p in (sweep / ".submitit").rglob("*_log.*")}
    summary = json.loads((jobs[0] / "metrics.json").read_text())
    assert summary["resumed_from"] == str(jobs[0] / "checkpoints" / "last.ckpt"), logs
    assert summary["resumed_at_step"] == 6  # the SIGTERM checkpoint of the preempted step
    # ... and kept its W&B run: both attempts logged offline under the id in wandb_id.txt
    run_id = (jobs[0] / "wandb_id.txt").read_text().strip()
    attempts = sorted(p.name for p in (jobs[0] / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and all(name.endswith(f"-{run_id}") for name in attempts)
    assert summary["wandb_id"] == run_id
    # the uninterrupted run of the same config and seed, outside SLURM
    ref = tmp_path / "uninterrupted"
    subprocess.run(
        [sys.executable, "-m", "sr_lightning.apps.train", *job, "seed=7", f"hydra.run.dir={ref}"],
        cwd=tmp_path, env={**env, "SLURM_CONF": ""}, check=True, capture_output=True,
        timeout=SWEEP_TIMEOUT_S,
    )  # fmt: skip
    a = torch.load(ref / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(jobs[0] / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == 24
    assert_same(a["state_dict"], b["state_dict"])
    assert_same(a["optimizer_states"], b["optimizer_states"])
