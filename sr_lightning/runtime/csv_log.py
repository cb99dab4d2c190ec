"""One ``csv/metrics.csv`` for the whole run, also after a resume.

Lightning's CSV logger deletes an existing ``metrics.csv`` when it starts. A resumed run
instead keeps the rows that were on disk when its checkpoint was written and appends its own:
the rows a killed run logged after that checkpoint are dropped, since the resumed run logs
those steps again (with the same values on the CPU). So the file holds every logged step
once, as a user reads it.

Every checkpoint records how many rows ``metrics.csv`` held when it was written (the loggers
are flushed first): ``checkpoint["sr_lightning_csv_rows"]``. A checkpoint without it (an older
one) keeps the rows logged before its step.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

ROWS_KEY = "sr_lightning_csv_rows"


def csv_logger(loggers: list[Logger]) -> CSVLogger | None:
    return next((lg for lg in loggers if isinstance(lg, CSVLogger)), None)


def count_rows(path: Path) -> int:
    """Data rows of a CSV file Lightning wrote (numbers only: one line per row)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().count(b"\n")
    except OSError:
        return 0
    return max(0, lines - 1)


def record_rows(
    trainer: Trainer, checkpoint: dict[str, Any], redone_from_step: int | None = None
) -> None:
    """Store in a checkpoint being written how many rows ``csv/metrics.csv`` holds (flushed
    first); called by :class:`sr_lightning.runtime.faults.LastCheckpoint` for every save.

    ``redone_from_step``: trailing rows at this logger step or later are not counted, since
    a run resumed from this checkpoint logs them again (a checkpoint written at the start of an
    epoch, after the learning-rate monitor logged that epoch's first value).
    """
    logger = csv_logger(trainer.loggers)
    if logger is None or not trainer.is_global_zero:
        return
    logger.save()
    path = Path(logger.log_dir) / "metrics.csv"
    rows = count_rows(path)
    if redone_from_step is not None and rows:
        with open(path, newline="") as f:
            steps = [row.get("step") or "" for row in csv.DictReader(f)]
        while rows and steps[rows - 1] and int(float(steps[rows - 1])) >= redone_from_step:
            rows -= 1
    checkpoint[ROWS_KEY] = rows


def _kept_rows(path: Path, ckpt_path: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of ``path`` that the checkpoint had seen."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    if ROWS_KEY in ckpt:
        return header, rows[: int(ckpt[ROWS_KEY])]
    loop = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    step = int(loop.get("_batches_that_stepped", ckpt.get("global_step", 0)))
    return header, [r for r in rows if r.get("step") and int(float(r["step"])) < step]


@rank_zero_only
def continue_csv_log(loggers: list[Logger], ckpt_path: str) -> None:
    """Before a resumed fit: keep the rows logged up to the checkpoint in ``metrics.csv`` and
    have the CSV logger append to them (it would delete the file)."""
    logger = csv_logger(loggers)
    if logger is None:
        return
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    header, kept = _kept_rows(path, ckpt_path)
    dropped = count_rows(path) - len(kept)
    fields = sorted(header)  # Lightning's order: later rows append under the same header
    writer = logger.experiment  # created now: it removes the old file
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=fields)
        out.writeheader()
        out.writerows(kept)
    writer.metrics_keys = fields
    if dropped:
        log.info("metrics.csv: %d row(s) after the checkpoint dropped; they are redone", dropped)
