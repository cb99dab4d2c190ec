"""A test-only callback that SIGKILLs its own training process at a chosen global step."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lightning.pytorch import Callback


class CrashAtStep(Callback):
    """Raise at the end of batch ``step``: an in-process stand-in for a kill (fast tests)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Crash(f"crashed at step {self.step}")


class Crash(RuntimeError):
    pass


class KillAtStep(Callback):
    """``kill -9`` at the end of batch ``step``: no handler, no atexit, no flush runs.

    Lightning runs checkpoint callbacks after every other callback, so a checkpoint due at
    ``step`` is never written: the kill always loses the steps since the previous one.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class WaitForRequeue(Callback):
    """On a SLURM job's first run only, stop at the end of batch ``step`` and wait (at most
    ``wait_s``) for the requeue's SIGTERM, so that a test preempts it at a known step.

    It writes the job id to ``<run dir>/requeue_me`` for the test to ``scontrol requeue``.
    A requeued run (``SLURM_RESTART_COUNT`` > 0) and other array tasks than ``task`` go on.
    """

    def __init__(self, step: int, run_dir: str, task: int = 0, wait_s: float = 120) -> None:
        self.step, self.run_dir, self.task, self.wait_s = step, Path(run_dir), task, wait_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        first_run = int(os.environ.get("SLURM_RESTART_COUNT", "0")) == 0
        this_task = os.environ.get("SLURM_ARRAY_TASK_ID") == str(self.task)
        if trainer.global_step != self.step or not (first_run and this_task):
            return
        (self.run_dir / "requeue_me").write_text(os.environ["SLURM_JOB_ID"])
        deadline = time.monotonic() + self.wait_s
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.1)


class KillSweepAtStep(Callback):
    """``kill -9`` of this whole process group (a multirun and its jobs) at the end of batch
    ``step`` of sweep job ``job``, when the environment variable ``armed_by`` is set.

    Armed from outside the config, so the rerun of the same command has the same config.
    """

    def __init__(self, step: int, job: int, armed_by: str = "SR_TEST_KILL_SWEEP") -> None:
        self.step, self.job, self.armed_by = step, int(job), armed_by

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from hydra.core.hydra_config import HydraConfig

        armed = bool(os.environ.get(self.armed_by))
        if armed and trainer.global_step == self.step and HydraConfig.get().job.num == self.job:
            os.killpg(os.getpgid(0), signal.SIGKILL)
