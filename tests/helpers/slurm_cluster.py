"""A single-node SLURM on 127.0.0.1 for tests: munged, slurmctld and slurmd of Debian's
``slurm-wlm``, with their config, keys, state, spool and logs in one temporary folder.

``local_slurm(folder)`` yields the environment (``SLURM_CONF``) that points ``sbatch``,
``scontrol`` and submitit at it, and stops every daemon it started on the way out, also when
the test fails. A daemon that cannot start raises :class:`SlurmUnavailable` with its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
START_TIMEOUT_S = 60


class SlurmUnavailable(RuntimeError):
    """The local cluster could not be started (missing package, a daemon that died)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_conf(root: Path, host: str, cpus: int) -> str:
    """One node, one partition, no cgroups and no accounting: what a CPU test cluster needs.

    ``JobRequeue=1`` lets ``scontrol requeue`` put a running batch job back in the queue;
    ``cred_expire=10`` lets it start again after 10 s instead of the default 120 s.
    """
    return f"""\
ClusterName=srtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
KillWait=20
MinJobAge=300
SlurmdTimeout=60
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_idle(env: dict[str, str], procs: dict[str, subprocess.Popen], root: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    state = ""
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with {proc.returncode}:\n{_logs(root)}")
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=10
        )
        state = (out.stdout + out.stderr).strip()
        if out.returncode == 0 and state == "idle":
            return
        time.sleep(0.5)
    raise SlurmUnavailable(
        f"the node is not idle after {START_TIMEOUT_S} s ({state}):\n{_logs(root)}"
    )


def _logs(root: Path) -> str:
    parts = []
    for name in ("munged.log", "slurmctld.log", "slurmd.log"):
        path = root / name
        if path.is_file():
            parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
    return "\n".join(parts)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _cancel_all(env: dict[str, str]) -> None:
    """Cancel every job and wait (bounded) until none is left, so no job step outlives us."""
    with contextlib.suppress(Exception):
        subprocess.run(["scancel", "--full", "--user=root"], env=env, timeout=10, check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["squeue", "-h"], env=env, capture_output=True, text=True, timeout=10
            )
            if out.returncode != 0 or not out.stdout.strip():
                return
            time.sleep(0.5)


@contextlib.contextmanager
def local_slurm(root: Path, cpus: int = 2) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd under ``root``; yield the clients' environment."""
    missing = [name for name in (*DAEMONS, "sbatch", "sinfo") if shutil.which(name) is None]
    if missing:
        raise SlurmUnavailable(
            f"{', '.join(missing)} not found: apt-get install slurm-wlm munge (.ci/run does)"
        )
    host = socket.gethostname().split(".")[0]
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host, cpus))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    commands = {
        "munged": [
            "munged", "--foreground", "--force", f"--socket={root}/munge/munge.socket",
            f"--key-file={key}", f"--pid-file={root}/munge/munged.pid",
            f"--log-file={root}/munged.log", f"--seed-file={root}/munge/munged.seed",
        ],
        "slurmctld": ["slurmctld", "-D", "-c", "-f", str(conf)],
        "slurmd": ["slurmd", "-D", "-f", str(conf), "-N", host],
    }  # fmt: skip
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            log = open(root / f"{name}.out", "w")  # noqa: SIM115 (kept open for the daemon)
            procs[name] = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            if name == "munged":
                _wait_for(root / "munge" / "munge.socket", procs[name], root)
        _wait_idle(env, procs, root)
        yield env
    finally:
        if "slurmctld" in procs:
            _cancel_all(env)
        for name in reversed(list(procs)):
            _stop(procs[name])


def _wait_for(path: Path, proc: subprocess.Popen, root: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = (root / "munged.out").read_text() if (root / "munged.out").exists() else ""
            raise SlurmUnavailable(f"munged did not start:\n{out}\n{_logs(root)}")
        time.sleep(0.1)
