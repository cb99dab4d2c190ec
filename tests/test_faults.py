"""Faults: atomic checkpoint writes, RNG state in checkpoints, SIGTERM and SIGKILL recovery."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_lightning.faults import RNGStateCheckpoint, atomic_torch_save
from tests.conftest import tiny_overrides


def test_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # a kill arriving mid-write

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    callback = RNGStateCheckpoint()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    atomic_torch_save({"callbacks": callback.state_dict()}, tmp_path / "c.ckpt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    callback.load_state_dict(torch.load(tmp_path / "c.ckpt", weights_only=True)["callbacks"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def _train_cmd(tiny_data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "sr_lightning.train",
        *tiny_overrides(tiny_data),
        f"hydra.run.dir={run_dir}",
        "extras.print_config=false",
        "scale=2",
        "data.patches_per_image=400",  # 600 steps per epoch: the kill lands mid-epoch
        "trainer.max_epochs=1",
        *extra,
    ]  # fmt: skip


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_run_resumes_from_it(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(tiny_data, run), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for(lambda: (run / "csv" / "metrics.csv").exists() or proc.poll() is not None)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file(), err[-2000:]
    saved_step = torch.load(last, weights_only=True)["global_step"]
    assert 0 < saved_step < 600

    resumed = subprocess.run(_train_cmd(tiny_data, run, "ckpt_path=last"),
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] == 600


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_from_the_periodic_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    cmd = _train_cmd(tiny_data, run, "callbacks.periodic_last.every_n_train_steps=25")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    _wait_for(lambda: last.exists() or proc.poll() is not None)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    ckpt = torch.load(last, weights_only=True)  # never truncated
    saved_step = ckpt["global_step"]
    assert saved_step > 0 and saved_step % 25 == 0 and saved_step < 600
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"]
    assert any("RNGStateCheckpoint" in key for key in ckpt["callbacks"])

    resumed = subprocess.run([*cmd, "ckpt_path=last"], capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] == 600
