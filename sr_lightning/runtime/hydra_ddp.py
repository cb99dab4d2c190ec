"""DDP under Hydra: one output dir per job, also inside a multirun.

Lightning starts ranks 1..N-1 by running the script again with its command line. Under
``sr-train -m ...`` that command line is the whole sweep, so every extra rank would rerun
the sweep into folders of its own (and under submitit the script is submitit's, not ours).
Here rank 0 relaunches *its job* instead: the job's own overrides, in run mode, with
``hydra.run.dir`` set to the job's output dir and no ``.hydra/`` of its own.

A multirun runs its jobs one after another in one process, so each job also leaves the
process as it found it: its process group destroyed and Lightning's rendezvous variables
(``MASTER_PORT``, ...) restored, or the next job's ranks would meet at the old address.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist

from sr_lightning.runtime.lightning_compat import replace_hydra_subprocess_cmd

log = logging.getLogger(__name__)

ENTRY_MODULE = "sr_lightning.apps.train"
# Hydra overrides that still mean something to a rank running in run mode
_PASSTHROUGH_HYDRA_KEYS = (
    "hydra.verbose",
    "hydra.job.chdir",
    "hydra.job_logging",
    "hydra/job_logging",
)
# set by Lightning's launcher in the rank-0 process
_RENDEZVOUS_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def _quote(value: str) -> str:
    """A Hydra override value that survives any path (spaces, '=', ',')."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rank_command(local_rank: int) -> tuple[list[str], str]:
    """The command and working dir that start ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    command = [sys.executable, "-m", ENTRY_MODULE, f"--config-name={hc.job.config_name}"]
    command += [
        f"--config-dir={source.path}"
        for source in hc.runtime.config_sources
        if source.provider == "command-line"
    ]
    command += list(hc.overrides.task)
    command += [o for o in hc.overrides.hydra if o.startswith(_PASSTHROUGH_HYDRA_KEYS)]
    command += [
        f"hydra.run.dir={_quote(str(hc.runtime.output_dir))}",
        "hydra.output_subdir=null",
        f"hydra.job.name={hc.job.name}_rank{local_rank}",
        "hydra.mode=RUN",
    ]
    return command, get_original_cwd()


def install_rank_command() -> None:
    """Make Lightning's subprocess launcher start ranks with :func:`rank_command`.

    Lightning builds that command in a private helper (``_hydra_subprocess_cmd``, same
    signature since Lightning 1.6); if it is ever renamed, say so instead of silently
    falling back to rerunning the sweep.
    """
    for name in replace_hydra_subprocess_cmd(rank_command):
        log.warning(
            "%s has no _hydra_subprocess_cmd: DDP ranks of a multirun may rerun the sweep", name
        )


@contextmanager
def job_process_group() -> Iterator[None]:
    """Tear down what DDP set up in this process when the job ends (see module doc)."""
    before = {key: os.environ.get(key) for key in _RENDEZVOUS_ENV}
    was_initialized = dist.is_available() and dist.is_initialized()
    try:
        yield
    finally:
        if not was_initialized and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
