"""One run per run dir: a second sr-train / sr-eval on a busy run dir is refused in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import SoftFileLock

from sr_lightning.runtime import run_lock
from sr_lightning.runtime.run_lock import LOCK_NAME, OWNER_NAME, RunDirBusy, RunDirLock
from tests.helpers.config import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir``'s lock until it is killed."""
    code = (
        "import sys, time\n"
        "from sr_lightning.runtime.run_lock import RunDirLock\n"
        f"lock = RunDirLock({str(run_dir)!r}, 'sr-train').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


def test_a_busy_run_dir_is_refused_naming_the_dir_holder_and_way_out(tmp_path):
    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        with pytest.raises(RunDirBusy) as info:
            RunDirLock(run, "sr-eval").acquire()
    finally:
        stop(holder)
    message = str(info.value)
    assert "\n" not in message
    assert str(run) in message and f"pid {holder.pid} on {socket.gethostname()}" in message
    assert "(sr-train)" in message and "hydra.run.dir" in message


def test_a_killed_holder_does_not_block_the_resume(tmp_path):
    run = tmp_path / "run"
    stop(hold_lock(run))  # SIGKILL: no release, the owner file still names it
    assert json.loads((run / OWNER_NAME).read_text())["prog"] == "sr-train"
    with RunDirLock(run, "sr-train") as lock:
        assert lock.held
        assert json.loads((run / OWNER_NAME).read_text())["pid"] == os.getpid()
    assert not (run / OWNER_NAME).exists()


def test_a_soft_lock_left_by_a_dead_process_on_this_host_is_stale(tmp_path, monkeypatch):
    """Where the file system has no flock, the lock file outlives its process: the owner file
    tells a dead holder on this host (taken over) from one on another host (refused)."""
    monkeypatch.setattr(run_lock, "FileLock", SoftFileLock)
    monkeypatch.setattr(run_lock, "STALE_WAIT_S", 0.2)
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (run / LOCK_NAME).write_text("")
    owner = {"pid": int(dead.stdout), "host": "elsewhere", "prog": "sr-train"}
    (run / OWNER_NAME).write_text(json.dumps(owner))
    with pytest.raises(RunDirBusy, match="elsewhere"):
        RunDirLock(run).acquire()
    (run / OWNER_NAME).write_text(json.dumps({**owner, "host": socket.gethostname()}))
    lock = RunDirLock(run).acquire()
    assert lock.held
    lock.release()


def test_only_rank_zero_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert run_lock.lock_run_dir(tmp_path / "run", "sr-train") is None
    assert not (tmp_path / "run").exists()


def _cli(app: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"sr_lightning.apps.{app}", *args],
        capture_output=True, text=True, env=ENV, timeout=timeout, cwd=REPO,
    )  # fmt: skip


def test_sr_eval_into_a_busy_run_dir_is_refused_before_writing(tiny_data, tmp_path):
    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        proc = _cli("eval", "model=bicubic", "scale=2", f"paths.data_dir={tiny_data}",
                    "data.test_sets=[val]", f"hydra.run.dir={run}")  # fmt: skip
    finally:
        stop(holder)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sr-eval: error: run dir {run} is in use")
    assert f"pid {holder.pid}" in lines[0]
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME, OWNER_NAME]  # no .hydra, log


def test_sr_eval_keeps_an_earlier_results_json(tiny_data, tmp_path):
    run = tmp_path / "run"
    args = ("model=bicubic", "scale=2", f"paths.data_dir={tiny_data}", "data.test_sets=[val]",
            f"hydra.run.dir={run}")  # fmt: skip
    run.mkdir()
    (run / "results.json").write_text('{"earlier": 1}\n')
    refused = _cli("eval", *args)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "results.json already exists" in refused.stderr and "overwrite=true" in refused.stderr
    assert (run / "results.json").read_text() == '{"earlier": 1}\n'
    replaced = _cli("eval", *args, "overwrite=true")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert list(json.loads((run / "results.json").read_text())) == ["val"]


@pytest.mark.slow
def test_a_second_sr_train_is_refused_while_the_first_finishes(tiny_data, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "sr_lightning.apps.train", *tiny_overrides(tiny_data),
           "scale=2", "data.patches_per_image=800", "trainer.max_epochs=1",
           f"hydra.run.dir={run}"]  # fmt: skip
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not (run / "csv" / "metrics.csv").exists():  # training has started
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        hydra_files = {p: p.stat().st_mtime_ns for p in (run / ".hydra").iterdir()}
        second = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO,
                                timeout=120)  # fmt: skip
        assert first.poll() is None, "the first run ended before the second was refused"
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"sr-train: error: run dir {run} is in use by pid {first.pid}")
    # refused before Hydra wrote anything: the first run's .hydra/ is its own
    assert {p: p.stat().st_mtime_ns for p in (run / ".hydra").iterdir()} == hydra_files
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["completed"] and summary["global_step"] == 1200
    assert not (run / OWNER_NAME).exists()
