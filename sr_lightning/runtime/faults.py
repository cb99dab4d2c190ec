"""Surviving faults: atomic checkpoint writes and a checkpoint on preemption (SIGTERM).

A run killed at any moment must leave either the previous or the new ``last.ckpt``, never a
truncated one, and a preempted job (SLURM sends SIGTERM before the kill) must leave a
checkpoint of the step it reached, so that ``ckpt_path=last`` continues from there. A write
that fails (full disk, I/O error, permissions) stops the run with one line naming the file and
the errno (a full disk: the folder and its free space), and the periodic checkpoint before
``last.ckpt`` is kept as ``previous.ckpt``, a file of its own. Temporary files a killed run
left in the checkpoint folder and the run dir are removed when the next run starts there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sr_lightning.runtime.atomic import atomic_output, remove_stale_parts
from sr_lightning.runtime.csv_log import record_rows

log = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` into a temp file beside ``path``, fsync, then rename over it."""
    with atomic_output(path, durable=True) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


# errors a second attempt can outlive (a network file system's hiccup); a full disk or a
# missing permission stays, so those fail at once
RETRY_ERRNOS = frozenset({errno.EIO, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.EBUSY})
RETRY_DELAY_S = 2.0
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# the periodic checkpoint before the current last.ckpt: a copy, never a hard link to the same
# inode (damage to last.ckpt in place would destroy its fallback too)
PREVIOUS_NAME = "previous.ckpt"
# what torch's zip writer raises when a write comes up short (a full disk, a quota): a
# RuntimeError, not an OSError, e.g. "[enforce fail at inline_container.cc:626] . unexpected pos"
_TORCH_WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed", "file write failed")


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written; the file it would have replaced is intact.

    Carries the ``errno`` and ``filename`` of the failure; its message is the one line.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_space(folder: Path) -> str:
    """``"12.3 MB free in <folder>"``, or that it could not be read."""
    try:
        return f"{human_bytes(shutil.disk_usage(folder).free)} free in {folder}"
    except OSError:
        return f"free space of {folder} unknown"


def _torch_write_failure(err: RuntimeError) -> bool:
    text = str(err)
    return any(marker in text for marker in _TORCH_WRITE_FAILURES)


def save_checkpoint_file(obj: Any, path: str | Path, retries: int = 1) -> None:
    """:func:`atomic_torch_save`, retried after a transient I/O error, else one clear error."""
    path = Path(path)
    for attempt in range(retries + 1):
        try:
            atomic_torch_save(obj, path)
            return
        except RuntimeError as err:
            if not _torch_write_failure(err):
                raise
            kept = "the previous one is intact" if path.exists() else "no earlier one existed"
            error = CheckpointWriteError(
                f"cannot write checkpoint {path}: the write was cut short, the disk is probably "
                f"full ({free_space(path.parent)}); {kept}. Free space there, then rerun the "
                "same command to resume"
            )
            error.errno, error.filename = errno.ENOSPC, str(path)
            raise error from None
        except OSError as err:
            transient = err.errno in RETRY_ERRNOS and attempt < retries
            if transient:
                log.warning("writing %s failed (%s); retrying in %.0f s", path, err, RETRY_DELAY_S)
                time.sleep(RETRY_DELAY_S)
                continue
            name = errno.errorcode.get(err.errno, "unknown errno") if err.errno else "no errno"
            kept = "the previous one is intact" if path.exists() else "no earlier one existed"
            tried = f" (after {attempt + 1} attempts)" if attempt else ""
            space = f" ({free_space(path.parent)})" if err.errno in _FULL_ERRNOS else ""
            error = CheckpointWriteError(
                f"cannot write checkpoint {path}: [{name}] {err.strerror or err}{space}{tried}; "
                f"{kept}. Free space or fix the permissions of that folder, then rerun the same "
                "command to resume"
            )
            error.errno, error.filename = err.errno, str(path)
            raise error from err


def keep_previous(path: Path) -> None:
    """Keep a copy of ``path`` (the current last.ckpt) as ``previous.ckpt`` before it is
    replaced, so a last.ckpt found corrupt at resume has a good checkpoint to fall back on.

    A copy, written whole (temp file, fsync, rename), never a hard link: a kill between this
    and the new last.ckpt would leave both names on one inode, and damage to one the other.
    """
    if not path.is_file():
        return
    previous = path.with_name(PREVIOUS_NAME)
    try:
        with atomic_output(previous, durable=True) as tmp:
            shutil.copyfile(path, tmp)
    except OSError as err:  # the new checkpoint matters more than the old one
        log.warning("could not keep %s as %s: %s", path, previous, err)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with a same-directory temp file and ``os.replace``, one
    retry after a transient I/O error, and a one-line error naming the path and errno."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_checkpoint_file(checkpoint, path)


class LastCheckpoint(Callback):
    """``last.ckpt`` every ``every_n_train_steps`` steps and after every epoch, written only
    where Lightning resumes exactly.

    Lightning 2.6 treats a checkpoint written after an epoch's last batch but before the
    epoch has ended (a step checkpoint on the last batch, ModelCheckpoint's ``save_last`` at
    validation end) as a finished epoch: the resumed run skips that epoch's validation,
    ``on_train_epoch_end`` (the epoch loss) and its scheduler step. So the step checkpoint
    leaves out the last batch of an epoch, and the epoch's checkpoint is written once the
    epoch is complete: at the start of the next epoch and at the end of training.
    """

    def __init__(
        self, dirpath: str, every_n_train_steps: int = 500, filename: str = "last.ckpt"
    ) -> None:
        if every_n_train_steps < 0:
            raise ValueError(
                f"every_n_train_steps must be >= 0 (0: only after epochs), got {every_n_train_steps}"
            )
        self.path = Path(dirpath) / filename
        self.every_n_train_steps = int(every_n_train_steps)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.is_global_zero:  # debris of a killed run: checkpoints, metrics.json
            for folder in (self.path.parent, self.path.parent.parent):
                remove_stale_parts(folder)

    def _save(self, trainer: Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        # what was logged up to here is on disk before the checkpoint says it happened: a
        # resumed run logs only the steps after it (the CSV logger buffers 100 steps)
        for logger in trainer.loggers:
            logger.save()
        if trainer.is_global_zero:
            keep_previous(self.path)
        trainer.save_checkpoint(self.path, weights_only=False)  # a full, resumable checkpoint

    def on_train_batch_end(self, trainer: Trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = self.every_n_train_steps
        if not every or trainer.global_step % every or trainer.global_step == 0:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch's own checkpoint follows once the epoch has ended
        self._save(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == 0:
            return
        # The epoch loop clears its per-epoch counters right after this hook; saved before
        # that, a resumed run would count the new epoch's batches as done and skip it.
        epoch_loop = trainer.fit_loop.epoch_loop
        if not epoch_loop.restarting:
            epoch_loop.batch_progress.reset_on_run()
            epoch_loop.scheduler_progress.reset_on_run()
            epoch_loop.automatic_optimization.optim_progress.reset_on_run()
            epoch_loop.val_loop.batch_progress.total.reset()
        self._at_epoch_start = True
        try:
            self._save(trainer)  # the state the previous epoch ended with
        finally:
            self._at_epoch_start = False

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        at_epoch_start = getattr(self, "_at_epoch_start", False)
        # how much of csv/metrics.csv a run resumed from here keeps (the rest it logs again)
        step = trainer.fit_loop.epoch_loop._batches_that_stepped if at_epoch_start else None
        record_rows(trainer, checkpoint, redone_from_step=step)
        if at_epoch_start:
            # Lightning's restore adds one to the logger step of a run resumed here (it
            # expects checkpoints written before that step's increment): store it one lower,
            # so that the resumed run logs on the steps the uninterrupted one does
            loop = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
            loop["_batches_that_stepped"] -= 1

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer)


class PreemptionCheckpoint(Callback):
    """On SIGTERM (preemption, ``scancel``, a requeue), save ``last.ckpt`` before exiting.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next step boundary, on every
    rank; this callback saves the state of that step where ``ckpt_path=last`` looks for it.
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        if trainer.is_global_zero:
            keep_previous(self.path)
        trainer.save_checkpoint(self.path, weights_only=False)  # a full, resumable checkpoint
        log.warning(
            "SIGTERM: saved %s at global step %d; resume with ckpt_path=last",
            self.path,
            trainer.global_step,
        )


class RNGStateCheckpoint(Callback):
    """Saves and restores the Python, NumPy and torch (CPU and CUDA) RNG states.

    Lightning restores weights, optimizers, schedulers and loops but not the random number
    generators, so without this a resumed run draws different crops and augmentations than
    the uninterrupted run would. States are stored as plain containers and tensors, so the
    checkpoint still loads with ``weights_only=True``.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "python": random.getstate(),
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "gauss": float(gauss),
            },
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(_as_tuple(state["python"]))
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """Python's RNG state is nested tuples; checkpoints may hand them back as lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


# what a shell reports for a process ended by SIGTERM: `sr-train ... && sr-eval ...` stops
SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM


@contextlib.contextmanager
def sigterm_exit_status() -> Iterator[None]:
    """A run stopped by SIGTERM exits with 128 + 15 = 143, not 0 (Lightning's
    ``SIGTERMException`` is a ``SystemExit`` without a code). ``last.ckpt`` is saved by
    :class:`PreemptionCheckpoint` before; a SLURM requeue starts the job again either way."""
    try:
        yield
    except SIGTERMException:
        log.warning("stopped by SIGTERM; exit status %d", SIGTERM_EXIT_STATUS)
        raise SystemExit(SIGTERM_EXIT_STATUS) from None
