"""Faults: atomic checkpoint writes, RNG state in checkpoints, SIGTERM and SIGKILL recovery."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from sr_lightning.apps.train import train
from sr_lightning.runtime import faults
from sr_lightning.runtime.faults import (
    CheckpointWriteError,
    RNGStateCheckpoint,
    atomic_torch_save,
    save_checkpoint_file,
)
from tests.helpers.config import tiny_overrides


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
        sys.executable, "-m", "sr_lightning.apps.train",
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
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # not success: `&&` stops
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


# -- faults while writing -------------------------------------------------------------------


def _failing_save(err_no: int, fail_times: int = 10**9):
    """A torch.save that writes half a file then fails with ``err_no`` ``fail_times`` times."""
    real = torch.save
    calls = []

    def save(obj, f):
        calls.append(1)
        if len(calls) <= fail_times:
            f.write(b"half a checkpoint")
            raise OSError(err_no, os.strerror(err_no))
        real(obj, f)

    return save, calls


@pytest.mark.parametrize("err_no,name", [(errno.ENOSPC, "ENOSPC"), (errno.EIO, "EIO")])
def test_a_failing_checkpoint_write_names_path_and_errno_and_keeps_the_previous(
    tmp_path, monkeypatch, err_no, name
):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    save, calls = _failing_save(err_no)
    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(faults, "RETRY_DELAY_S", 0.0)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint_file({"step": 2}, path)
    message = str(info.value)
    assert str(path) in message and f"[{name}]" in message and "\n" not in message
    assert "previous one is intact" in message
    assert info.value.errno == err_no
    # a full disk stays full: no retry; an I/O error is retried once
    assert len(calls) == (2 if err_no == errno.EIO else 1)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_transient_io_error_is_retried_and_the_checkpoint_written(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save, calls = _failing_save(errno.EIO, fail_times=1)
    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(faults, "RETRY_DELAY_S", 0.0)
    save_checkpoint_file({"step": 2}, path)
    monkeypatch.undo()
    assert len(calls) == 2 and torch.load(path, weights_only=True) == {"step": 2}


def test_a_folder_without_write_permission_fails_naming_it(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(CheckpointWriteError, match=r"checkpoints/last\.ckpt: \[EACCES\]"):
        save_checkpoint_file({"step": 1}, tmp_path / "checkpoints" / "last.ckpt")


def _tiny_run(compose_train, tiny_data, run_dir, *extra):
    cfg = compose_train(*tiny_overrides(tiny_data), "scale=2", "trainer.max_epochs=1",
                        "data.patches_per_image=8", "callbacks.image_panels=null",
                        "callbacks.periodic_last.every_n_train_steps=4", *extra)  # fmt: skip
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return train(cfg)


def test_a_run_whose_disk_fills_stops_and_keeps_its_last_good_checkpoint(
    tiny_data, compose_train, tmp_path, monkeypatch
):
    real, saves = torch.save, []

    def fills_up(obj, f):  # the disk is full after step 8
        saves.append(obj["global_step"])
        if obj["global_step"] > 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, f)

    monkeypatch.setattr(torch, "save", fills_up)
    run = tmp_path / "run"
    with pytest.raises(
        CheckpointWriteError, match=r"^cannot write checkpoint .*\.ckpt: \[ENOSPC\]"
    ):
        _tiny_run(compose_train, tiny_data, run)
    assert saves == [4, 8, 12]  # the run stopped at the first failed write
    monkeypatch.undo()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_a_corrupt_last_checkpoint_is_named_and_the_previous_one_offered(
    tiny_data, compose_train, tmp_path
):
    run = tmp_path / "run"
    _tiny_run(compose_train, tiny_data, run)  # 12 steps: last.ckpt at 4, 8, then the end
    ckpts = run / "checkpoints"
    assert torch.load(ckpts / "previous.ckpt", weights_only=True)["global_step"] == 8
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[: len(data) // 2])  # truncated, e.g. a bad copy
    with pytest.raises(ValueError) as info:
        _tiny_run(compose_train, tiny_data, run, "trainer.max_epochs=2")
    message = str(info.value)
    assert f"cannot resume from {ckpts / 'last.ckpt'}: it is truncated or corrupt" in message
    assert f"ckpt_path={ckpts / 'previous.ckpt'}" in message and "global step 8" in message
    metrics = _tiny_run(compose_train, tiny_data, run, "trainer.max_epochs=2",
                        f"ckpt_path={ckpts / 'previous.ckpt'}")  # fmt: skip
    assert metrics["val/psnr"] > 0
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 24


def test_a_full_disk_inside_torchs_zip_writer_is_one_line_with_the_free_space(
    tmp_path, monkeypatch
):
    """torch reports a short write as a RuntimeError from its zip writer, not an OSError."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_torch_save({"step": 1}, path)

    def short_write(obj, f):
        f.write(b"half a checkpoint")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:626] . unexpected pos 2048 vs 1984"
        )

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint_file({"step": 2}, path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot write checkpoint {path}: ")
    assert f"free in {path.parent})" in message and "disk is probably full" in message
    assert "previous one is intact" in message and info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_other_runtime_errors_of_torch_save_are_not_disguised(tmp_path, monkeypatch):
    def bug(obj, f):
        raise RuntimeError("cannot pickle 'generator' object")

    monkeypatch.setattr(torch, "save", bug)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint_file({"step": 2}, tmp_path / "last.ckpt")


def test_previous_ckpt_is_a_file_of_its_own_also_after_a_kill_during_the_save(
    tmp_path, monkeypatch
):
    last = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, last)
    faults.keep_previous(last)
    previous = tmp_path / "previous.ckpt"
    assert previous.stat().st_ino != last.stat().st_ino and last.stat().st_nlink == 1

    def killed(obj, f):
        raise KeyboardInterrupt  # the kill lands after previous.ckpt, before the new last.ckpt

    monkeypatch.setattr(torch, "save", killed)
    faults.keep_previous(last)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 2}, last)
    monkeypatch.undo()
    assert previous.stat().st_ino != last.stat().st_ino
    assert last.stat().st_nlink == previous.stat().st_nlink == 1
    with open(last, "r+b") as f:  # damage to last.ckpt in place ...
        f.truncate(10)
    assert torch.load(previous, weights_only=True) == {"step": 1}  # ... leaves the fallback
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "previous.ckpt"]


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def _debris(folder: Path, name: str, age_s: float = 3600.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half a file")
    old = time.time() - age_s
    os.utime(path, (old, old))
    return path


def test_stale_part_files_are_removed_but_a_live_writers_are_kept(tmp_path):
    from sr_lightning.runtime.atomic import remove_stale_parts

    dead = _dead_pid()
    stale = [
        _debris(tmp_path, f".last.p{dead}.ab12cd34.part.ckpt"),
        _debris(tmp_path, ".img_001.x1y2z3q4.part.png"),  # written before names had a pid
        _debris(tmp_path, f".previous.ckpt.{dead}.tmp"),  # the old hard-link temp file
    ]
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = [
            _debris(tmp_path, f".img_002.p{live.pid}.ab12cd34.part.png"),  # a writer at work
            _debris(tmp_path, f".img_003.p{dead}.ab12cd34.part.png", age_s=-60),  # newer
            _debris(tmp_path, ".notes.txt"),
            _debris(tmp_path, "img_004.part.png"),  # not hidden: not ours
        ]
        assert sorted(remove_stale_parts(tmp_path)) == sorted(stale)
    finally:
        live.kill()
        live.wait()
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_the_next_run_removes_the_part_files_a_killed_run_left(tiny_data, compose_train, tmp_path):
    run = tmp_path / "run"
    dead = _dead_pid()
    debris = [
        _debris(run / "checkpoints", f".last.p{dead}.ab12cd34.part.ckpt"),
        _debris(run, f".metrics.p{dead}.ab12cd34.part.json"),
    ]
    _tiny_run(compose_train, tiny_data, run)
    assert not any(p.exists() for p in debris)
    assert not [p.name for p in run.rglob("*") if ".part" in p.name]
    last, previous = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "previous.ckpt"
    assert last.stat().st_ino != previous.stat().st_ino and last.stat().st_nlink == 1


def test_sigterm_is_exit_status_143_not_success():
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from sr_lightning.runtime.faults import sigterm_exit_status

    with pytest.raises(SystemExit) as info, sigterm_exit_status():
        raise SIGTERMException  # what Lightning raises at the step after the signal
    assert info.value.code == 143
    with pytest.raises(SystemExit) as info, sigterm_exit_status():
        raise SystemExit(2)  # a user error keeps its own status
    assert info.value.code == 2
