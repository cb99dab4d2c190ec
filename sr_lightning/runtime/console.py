"""What a training run prints: short and useful on a terminal and in a redirected log.

* :func:`quiet_third_party` drops messages a user cannot act on (Lightning's litlogger tip,
  the ``_pytree`` deprecation, resume warnings that are false here since this project keeps
  the old logs and checkpoints, W&B's ``anonymous`` deprecation, Optuna's alembic lines).
* :class:`LineProgress` replaces the progress bar when the output is not a terminal: one
  line per epoch (and one a minute within long epochs) instead of carriage returns.
* :class:`CompactModelSummary` prints the parameter count in one line, without Lightning's
  FLOPs column (always 0 here: it is only measured with an example input).
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from typing import Any

from lightning.pytorch.callbacks import ModelSummary, ProgressBar

log = logging.getLogger("sr_lightning.progress")

# (message regex, why it is noise here)
_NOISE_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's own use of a deprecated torch API
    r".*Checkpoint directory .* exists and is not empty",  # resuming keeps its checkpoints
    r".*Previous log files in this directory will be deleted",  # train.py keeps them aside
    r".*Experiment logs directory .* exists and is not empty",
    # false here: step values are logged every log_every_n_steps global steps, across epochs
    r".*is smaller than the logging interval",
    # the epochs between two validations (check_val_every_n_epoch) have no val/psnr by design;
    # the best checkpoint is chosen at the validations
    r".*could not find the monitored key in the returned metrics",
)
_NOISE_LOG_LINES = (
    re.compile(r"^💡 Tip: .*litlogger"),
    re.compile(r"^Trainer already configured with model summary callbacks"),  # ours, on purpose
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in _NOISE_LOG_LINES)


def quiet_third_party() -> None:
    """Silence the third-party messages listed in the module doc (idempotent)."""
    for pattern in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's RDB storage migrations


def interactive() -> bool:
    """True when both output streams are terminals (a progress bar only helps there)."""
    return all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))


def _fmt(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"


class LineProgress(ProgressBar):
    """A progress "bar" for logs: one line per epoch, and one every ``every_s`` seconds.

    Lines go through logging (``sr_lightning.progress``), so they also land in the run's
    ``train.log``.
    """

    KEYS = ("train/loss_epoch", "train/loss_step", "val/psnr", "val/psnr_best", "val/lpips")

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._enabled = True
        self._epoch_start = self._last_line = time.monotonic()
        self._pending: str | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, trainer, prefix: str) -> None:
        metrics = trainer.callback_metrics
        values = [f"{k} {_fmt(metrics[k])}" for k in self.KEYS if k in metrics]
        if "train/loss_epoch" in metrics:
            values = [v for v in values if not v.startswith("train/loss_step")]
        log.info("%s: %s", prefix, ", ".join(values) or "no metrics yet")
        self._last_line = time.monotonic()

    def _epochs(self, trainer) -> str:
        return "" if trainer.max_epochs in (None, -1) else f"/{trainer.max_epochs}"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._flush(trainer)
        self._epoch_start = time.monotonic()

    def on_train_end(self, trainer, pl_module) -> None:
        self._flush(trainer)

    def _flush(self, trainer) -> None:
        """The line of the epoch that just ended (its epoch-level metrics are logged now)."""
        if self._pending is not None:
            self._line(trainer, self._pending)
            self._pending = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._enabled and time.monotonic() - self._last_line >= self.every_s:
            total = self.total_train_batches
            self._line(
                trainer,
                f"epoch {trainer.current_epoch}{self._epochs(trainer)} batch {batch_idx + 1}"
                + (f"/{total}" if isinstance(total, int) else ""),
            )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # the module logs its epoch means in its own hook, which runs after this one
        if self._enabled and trainer.is_global_zero:
            seconds = time.monotonic() - self._epoch_start
            self._pending = (
                f"epoch {trainer.current_epoch}{self._epochs(trainer)} step "
                f"{trainer.global_step} ({seconds:.1f} s)"
            )


class CompactModelSummary(ModelSummary):
    """``model: ESPCN net, 22.7 K params (0.09 MB)``: the summary in one line, no FLOPs."""

    @staticmethod
    def summarize(
        summary_data,
        total_parameters,
        trainable_parameters,
        model_size,
        total_training_modes,
        total_flops=0,
        **summarize_kwargs,
    ) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_human_readable_count,
        )

        columns = dict(summary_data)
        parts = [
            f"{name} ({kind}) {str(params).strip()}"
            for name, kind, params in zip(
                columns.get("Name", []),
                columns.get("Type", []),
                columns.get("Params", []),
                strict=True,
            )
            if str(params).strip() not in ("0", "")
        ]
        frozen = total_parameters - trainable_parameters
        log.info(
            "model: %s; %s trainable params%s, %.2f MB",
            ", ".join(parts) or "no parameters",
            get_human_readable_count(trainable_parameters),
            f" + {get_human_readable_count(frozen)} frozen" if frozen else "",
            model_size,
        )
