"""Sweep summary: each job's overrides against its best ``val/psnr``, in the sweep dir.

A Hydra callback (registered in ``conf/hydra/default.yaml``) that, each time a job of a
multirun ends, rewrites

* ``<sweep dir>/summary.md``: a table for people, best job first, showing the overrides that
  differ between jobs, the metrics, the status (a failed job says why) and its dir;
* ``<sweep dir>/summary.csv``: every override and metric of every job, for pandas.

So a running sweep can be watched, and a sweep that dies halfway still has its table. Jobs may
end at the same moment in other processes or on other nodes (submitit): each job first writes
its own row (``.summary/<job>.json``), then the tables are rebuilt from all rows under a file
lock and renamed into place, so no row is lost and no reader sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from sr_lightning.core.config import lower_is_better
from sr_lightning.runtime.atomic import write_atomic
from sr_lightning.runtime.errors import format_failure

log = logging.getLogger(__name__)

ROWS_DIR = ".summary"
RUN_SUMMARY = "metrics.json"  # written by sr_lightning.apps.train in every run dir
EVAL_RESULTS = "results.json"  # written by sr_lightning.apps.eval: {set: {psnr_y, ssim_y, images}}


class SweepSummary(Callback):
    """Hydra callback: refresh the sweep summary whenever a job ends (see module doc)."""

    def __init__(self, metrics: Sequence[str] = ("val/psnr_best", "val/psnr", "val/ssim")) -> None:
        if isinstance(metrics, str):
            metrics = [metrics]
        self.metrics = list(dict.fromkeys(metrics))  # `${optimized_metric}` may repeat one
        if not self.metrics:
            raise ValueError("hydra.callbacks.sweep_summary.metrics is empty: name one metric")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # conf/paths puts the sweep dir under ${hydra:runtime.cwd}; that resolver needs a
        # registered Hydra config, which Hydra only registers per job. Register the sweep's
        # own, so the sweeper and launcher (also submitit's job processes) can resolve it.
        HydraConfig.instance().set_config(config)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or launch_rank() != 0:
            return  # single runs, and the extra DDP/SLURM ranks of a job, have no sweep
        sweep_dir = Path(str(config.hydra.sweep.dir))
        row = job_row(config, job_return, self.metrics)
        rows_dir = sweep_dir / ROWS_DIR
        rows_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(rows_dir / f"{row['job']}.json", json.dumps(row, indent=1))
        refresh(sweep_dir, self.metrics)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # the last job's is registered now
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = refresh(sweep_dir, self.metrics)
        if rows:
            best = rows[0]
            metric = (expand_metrics(self.metrics, rows) or self.metrics)[0]
            value = best.get(metric)
            log.info(
                "sweep summary: %s (best: job %s, %s = %s)",
                sweep_dir / "summary.md",
                best["job"],
                metric,
                "n/a" if value is None else f"{value:.4f}",
            )


def launch_rank() -> int:
    """This process's global rank when a cluster launched several per job (else 0)."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``["model=espcn", "+x.y=1"]`` -> ``{"model": "espcn", "x.y": "1"}``."""
    parsed = {}
    for item in overrides:
        key, _, value = item.partition("=")
        parsed[key.lstrip("+~")] = value
    return parsed


def job_row(config: DictConfig, job_return: JobReturn, metrics: Sequence[str]) -> dict:
    """What the summary shows of one finished job."""
    job_dir = Path(str(config.hydra.runtime.output_dir))
    sweep_dir = Path(str(config.hydra.sweep.dir))
    run = read_json(job_dir / RUN_SUMMARY)
    values = dict(run.get("metrics") or {}) | eval_metrics(read_json(job_dir / EVAL_RESULTS))
    ok = job_return.status == JobStatus.COMPLETED
    if (
        ok and "*" not in metrics[0] and metrics[0] not in values
    ):  # e.g. a task without metrics.json: its return value
        with contextlib.suppress(TypeError, ValueError):
            values[metrics[0]] = float(job_return.return_value)
    error = None if ok else getattr(job_return, "_return_value", None)
    try:
        rel_dir = str(job_dir.relative_to(sweep_dir))
    except ValueError:
        rel_dir = str(job_dir)
    names = expand_metrics(metrics, [values])
    return {
        "job": int(config.hydra.job.num),
        "status": "completed" if ok else "failed",
        "error": None if error is None else format_failure(error),
        "overrides": parse_overrides(config.hydra.overrides.task),
        **{name: _finite(values.get(name)) for name in names},
        "epochs": run.get("epochs"),
        "global_step": run.get("global_step"),
        "dir": rel_dir,
    }


def eval_metrics(results: Mapping) -> dict[str, float]:
    """sr-eval's ``{"Set5": {"psnr_y": 30.1, ...}}`` as ``{"Set5/psnr_y": 30.1, ...}``."""
    return {
        f"{name}/{key}": value
        for name, scores in results.items()
        if isinstance(scores, Mapping)
        for key, value in scores.items()
        if key != "images"
    }


def expand_metrics(metrics: Sequence[str], rows: Sequence[Mapping]) -> list[str]:
    """Metric names, with patterns (``*/psnr_y``) replaced by the matching names of the rows.

    Matches keep the order they first appear in (sr-eval: set by set, PSNR then SSIM).
    """
    names: list[str] = []
    for row in rows:
        for key in row:
            if key not in names and any(
                "*" in m and "/" in key and fnmatch.fnmatchcase(key, m) for m in metrics
            ):
                names.append(key)
    plain = [m for m in metrics if "*" not in m]
    return plain + names if plain else names


def refresh(sweep_dir: Path, metrics: Sequence[str]) -> list[dict]:
    """Rebuild summary.md and summary.csv from every job's row; returns the rows, best first."""
    rows_dir = sweep_dir / ROWS_DIR
    if not rows_dir.is_dir():
        return []
    with FileLock(rows_dir / ".lock"):
        rows = [read_json(path) for path in sorted(rows_dir.glob("*.json"))]
        rows = [row for row in rows if row]
        metrics = expand_metrics(metrics, rows) or list(metrics)
        rows = sort_rows(rows, metrics[0])
        write_atomic(sweep_dir / "summary.md", render_markdown(rows, metrics, sweep_dir))
        write_atomic(sweep_dir / "summary.csv", render_csv(rows, metrics))
    return rows


def sort_rows(rows: list[dict], metric: str) -> list[dict]:
    """Completed jobs by ``metric`` (best first: highest, or lowest for LPIPS, DISTS and
    losses), then jobs without it, then failures."""
    sign = 1.0 if lower_is_better(metric) else -1.0

    def key(row: dict) -> tuple:
        value = row.get(metric)
        rank = 0 if value is not None else (1 if row.get("status") == "completed" else 2)
        return rank, sign * (value if value is not None else 0.0), row.get("job", 0)

    return sorted(rows, key=key)


def varying_keys(rows: list[dict]) -> list[str]:
    """Override keys whose value is not the same in every job (all of them for one job)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row.get("overrides", {}) if k not in keys]
    if len(rows) < 2:
        return keys
    return [k for k in keys if len({row["overrides"].get(k) for row in rows}) > 1]


def render_markdown(rows: list[dict], metrics: Sequence[str], sweep_dir: Path) -> str:
    keys = varying_keys(rows)
    failed = sum(row.get("status") != "completed" for row in rows)
    header = ["job", *keys, *metrics, "status", "dir"]
    lines = [
        f"# Sweep {sweep_dir.name}",
        "",
        f"{len(rows)} jobs finished, {failed} failed; best `{metrics[0]}` first. "
        f"Updated {datetime.now():%Y-%m-%d %H:%M:%S}. All overrides: `summary.csv`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if h in metrics or h == "job" else "---" for h in header) + "|",
    ]
    for row in rows:
        status = row.get("status", "")
        if row.get("error"):
            status += f": {row['error']}"
        cells = [
            str(row.get("job", "")),
            *(row.get("overrides", {}).get(k, "") for k in keys),
            *(_format(row.get(m)) for m in metrics),
            _shorten(status, 300),
            row.get("dir", ""),
        ]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_csv(rows: list[dict], metrics: Sequence[str]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row.get("overrides", {}) if k not in keys]
    header = ["job", *keys, *metrics, "epochs", "global_step", "status", "error", "dir"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [
                row.get("job"),
                *(row.get("overrides", {}).get(k, "") for k in keys),
                *("" if row.get(m) is None else row[m] for m in metrics),
                *("" if row.get(k) is None else row[k] for k in ("epochs", "global_step")),
                row.get("status", ""),
                row.get("error") or "",
                row.get("dir", ""),
            ]
        )
    return out.getvalue()


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ``{}`` when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, Mapping) else {}


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _format(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(cell: str) -> str:
    return str(cell).replace("|", "\\|")
