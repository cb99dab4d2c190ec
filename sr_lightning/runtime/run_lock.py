"""One run per run dir: a lock held by rank 0 for the life of an sr-train or sr-eval run.

Two processes writing one run dir mix their files (``overrides.yaml`` from one, ``last.ckpt``
from the other) and both crash. So the run dir is locked before Hydra writes into it (a
Hydra callback: ``on_run_start``, and ``on_job_start`` for each job of a multirun), and a
second run is refused at once, in one line naming the dir, the holder and what to do.

The lock is ``<run dir>/.sr-run.lock`` (``filelock``: an ``flock``, which the kernel drops
when its process dies, so a killed run never blocks its own resume; a soft lock file where
the file system has no ``flock``). Beside it, ``.sr-run.lock.owner`` records the holder's
pid, host and program, for the message; a soft lock whose recorded pid is dead on this host
is stale and taken over. Only rank 0 locks: DDP ranks 1..N write nothing of their own there.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sr_lightning.runtime.atomic import pid_alive

LOCK_NAME = ".sr-run.lock"
OWNER_NAME = ".sr-run.lock.owner"
# how long a busy lock whose recorded holder is dead is waited for: an orphaned child (a data
# worker forked by the killed run) may hold it a few seconds more
STALE_WAIT_S = 10.0
_RANK_ENV = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


class RunDirBusy(RuntimeError):
    """Another live process holds the run dir; the message is the one line shown."""


def env_rank() -> int:
    """This process's global rank from the launcher's environment (Lightning's rule)."""
    for key in _RANK_ENV:
        value = os.environ.get(key)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                continue
    return 0


def read_owner(run_dir: Path) -> dict[str, Any]:
    try:
        owner = json.loads((Path(run_dir) / OWNER_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def owner_is_dead(owner: dict[str, Any]) -> bool:
    """The recorded holder ran on this host and is gone (another host's cannot be checked)."""
    if owner.get("host") != socket.gethostname():
        return False
    try:
        return not pid_alive(int(owner.get("pid", 0)))
    except (TypeError, ValueError):
        return False


def busy_message(run_dir: Path, owner: dict[str, Any]) -> str:
    who = (
        f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
        + (f" ({owner['prog']})" if owner.get("prog") else "")
        if owner
        else "another process"
    )
    return (
        f"run dir {run_dir} is in use by {who}; one run at a time per run dir. Wait for it to "
        f"end, pick another hydra.run.dir, or, if no such process is running, delete "
        f"{Path(run_dir) / LOCK_NAME}"
    )


class RunDirLock:
    """The lock on one run dir; :meth:`acquire` fails at once with :class:`RunDirBusy`."""

    def __init__(self, run_dir: str | Path, prog: str = "") -> None:
        self.run_dir = Path(run_dir).absolute()
        self.prog = prog or Path(sys.argv[0]).name
        self._lock: FileLock | None = None

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def acquire(self) -> RunDirLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.run_dir / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            owner = read_owner(self.run_dir)
            if not owner_is_dead(owner):
                raise RunDirBusy(busy_message(self.run_dir, owner)) from None
            self._take_stale(lock, owner)
        self._lock = lock
        self._write_owner()
        return self

    def _take_stale(self, lock: FileLock, owner: dict[str, Any]) -> None:
        """The holder recorded in the side file is dead: wait a little for an orphaned child
        to let go of an flock, then remove a soft lock file it left behind."""
        deadline = time.monotonic() + STALE_WAIT_S
        while time.monotonic() < deadline:
            try:
                lock.acquire(timeout=0.5)
                return
            except Timeout:
                pass
        try:  # a soft lock (no flock on this file system) outlives its process
            (self.run_dir / LOCK_NAME).unlink()
            lock.acquire(timeout=0)
        except (OSError, Timeout):
            raise RunDirBusy(busy_message(self.run_dir, owner)) from None

    def _write_owner(self) -> None:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "prog": self.prog,
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        tmp = self.run_dir / f"{OWNER_NAME}.{os.getpid()}"
        try:
            tmp.write_text(json.dumps(owner) + "\n")
            os.replace(tmp, self.run_dir / OWNER_NAME)
        except OSError:  # only the message of a refused second run needs it
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self._lock is None:
            return
        if read_owner(self.run_dir).get("pid") == os.getpid():
            (self.run_dir / OWNER_NAME).unlink(missing_ok=True)
        self._lock.release()
        self._lock = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def refuse_busy(prog: str, err: RunDirBusy) -> None:
    """One line on stderr and exit status 2 (a user error, like every other one)."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    raise SystemExit(2)


# locks this process holds, by run dir: a run that ended by SystemExit (a user error) skips
# Hydra's on_run_end, and the next run in the same process (tests, notebooks) takes over
_HELD: dict[Path, RunDirLock] = {}


def lock_run_dir(run_dir: str | Path, prog: str) -> RunDirLock | None:
    """Lock ``run_dir`` for this process (rank 0 only); a busy one exits with one line."""
    if env_rank() != 0:
        return None
    path = Path(run_dir).absolute()
    previous = _HELD.pop(path, None)
    if previous is not None:
        previous.release()
    try:
        lock = RunDirLock(path, prog).acquire()
    except RunDirBusy as err:
        refuse_busy(prog, err)
    _HELD[path] = lock
    return lock


def unlock_run_dir(run_dir: str | Path) -> None:
    lock = _HELD.pop(Path(run_dir).absolute(), None)
    if lock is not None:
        lock.release()


class RunDirLockCallback(Callback):
    """Hydra callback: lock the run dir before Hydra writes ``.hydra/`` and the log into it;
    in a multirun, the sweep dir (one sweep per dir) and each job's dir."""

    @staticmethod
    def _prog(config: DictConfig) -> str:
        task = OmegaConf.select(config, "task_name", default=None)
        return f"sr-{task}" if task else Path(sys.argv[0]).name

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._run_dir = str(config.hydra.run.dir)
        lock_run_dir(self._run_dir, self._prog(config))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        unlock_run_dir(self._run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        self._sweep_dir = str(config.hydra.sweep.dir)
        lock_run_dir(self._sweep_dir, self._prog(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        unlock_run_dir(self._sweep_dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            lock_run_dir(config.hydra.runtime.output_dir, self._prog(config))

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            unlock_run_dir(config.hydra.runtime.output_dir)
