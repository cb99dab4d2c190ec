"""Surviving faults: atomic checkpoint writes and a checkpoint on preemption (SIGTERM).

A run killed at any moment must leave either the previous or the new ``last.ckpt``, never a
truncated one, and a preempted job (SLURM sends SIGTERM before the kill) must leave a
checkpoint of the step it reached, so that ``ckpt_path=last`` continues from there.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` into a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with a same-directory temp file and ``os.replace``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, path)


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
        trainer.save_checkpoint(self.path)
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
