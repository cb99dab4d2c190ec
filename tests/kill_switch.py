"""A test-only callback that SIGKILLs its own training process at a chosen global step."""

from __future__ import annotations

import os
import signal

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
