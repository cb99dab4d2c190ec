"""What a run dir says about its run: finished (with its final metrics) or not.

A re-run or requeued job whose run already finished must not train again, and must not
touch what the run wrote: :func:`completed_run` tells it so from ``metrics.json`` (written
only when a run ends) and the newest checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUMMARY_FILE = "metrics.json"
BUDGET_KEYS = ("max_epochs", "max_steps", "max_time")


def training_budget(trainer_cfg: Mapping) -> dict[str, Any]:
    """The keys of ``cfg.trainer`` that decide when training ends (recorded in metrics.json)."""
    return {key: trainer_cfg.get(key) for key in BUDGET_KEYS}


def read_summary(output_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((Path(output_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def completed_run(
    output_dir: Path, trainer_cfg: Mapping, checkpoint_step: int | None
) -> dict[str, Any] | None:
    """The summary of the finished run in ``output_dir``, or None when training should go on.

    Finished means: metrics.json says the run completed under the same budget
    (``trainer.max_epochs`` / ``max_steps`` / ``max_time``), and the checkpoint training would
    resume from (``checkpoint_step``, its global step) is the one it ended at. A larger budget,
    or a newer checkpoint (a later run killed before writing metrics.json), is not finished.
    """
    summary = read_summary(output_dir)
    if not summary or not summary.get("completed"):
        return None
    if summary.get("budget") != training_budget(trainer_cfg):
        return None
    if checkpoint_step is None or checkpoint_step != summary.get("global_step"):
        return None
    return summary
