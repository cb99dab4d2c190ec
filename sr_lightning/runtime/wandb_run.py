"""W&B run identity and lifetime: one W&B run per job, continued when the job is resumed.

* The run id lives in ``<run dir>/wandb_id.txt``: a requeued or resumed job that finds it
  logs into the same W&B run (``resume="allow"``) instead of starting a second one.
* ``wandb.finish()`` ends each job's run, so that the next job of a multirun (same process)
  gets a run of its own rather than Lightning's "reusing the run in progress".

``wandb`` is imported only when a W&B logger is configured.
"""

from __future__ import annotations

import secrets
import string
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

from sr_lightning.runtime.atomic import write_atomic

ID_FILE = "wandb_id.txt"


def wandb_logger_configs(cfg: DictConfig) -> list[DictConfig]:
    """The entries of ``cfg.logger`` that build a Lightning ``WandbLogger``."""
    loggers = cfg.get("logger") or {}
    return [
        entry
        for entry in loggers.values()
        if isinstance(entry, Mapping) and str(entry.get("_target_", "")).endswith("WandbLogger")
    ]


def assign_run_id(cfg: DictConfig, output_dir: Path) -> str | None:
    """Give the W&B logger this run dir's id (made and saved on first use); returns it.

    An explicit ``logger.wandb.id`` wins and is saved too, so that a later resume of this
    run dir continues that run.
    """
    entries = wandb_logger_configs(cfg)
    if not entries:
        return None
    id_file = output_dir / ID_FILE
    run_id = entries[0].get("id") or (id_file.read_text().strip() if id_file.is_file() else None)
    if not run_id:
        run_id = new_run_id()
    for entry in entries:
        with open_dict(entry):
            entry.id = run_id
    _save_id(id_file, run_id)
    return run_id


def new_run_id(length: int = 8) -> str:
    """A fresh W&B-style run id (lowercase letters and digits)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


@rank_zero_only
def _save_id(id_file: Path, run_id: str) -> None:
    if id_file.is_file() and id_file.read_text().strip() == run_id:
        return
    write_atomic(id_file, run_id + "\n")


@rank_zero_only
def update_summary(loggers: Iterable[Logger], values: Mapping[str, Any]) -> None:
    """Put run-level facts (best checkpoint, run dir) in the W&B run summary."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(dict(values))


def finish_run(exit_code: int = 0) -> None:
    """End the W&B run of this process, if any (a no-op when wandb was never imported)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)
