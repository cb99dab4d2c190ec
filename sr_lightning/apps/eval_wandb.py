"""``sr-eval logger=wandb``: the benchmark numbers into W&B, beside the validation curves.

The results go to the training run of the checkpoint when its id is known (the run dir's
``wandb_id.txt``, written by ``sr-train``), so W&B can compare runs by their benchmark
numbers; otherwise (bicubic, exported weights, a run trained without W&B) to an eval run of
its own (``job_type=eval``) whose config names what was evaluated.

Logged: ``eval/results`` (a table: set × PSNR / SSIM / LPIPS / DISTS), ``eval/per_image``
(a row per image, as ``per_image.csv``) and the summary keys ``eval/<set>/<metric>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sr_lightning.core.builders import to_plain
from sr_lightning.runtime.wandb_run import ID_FILE, wandb_logger_configs

log = logging.getLogger(__name__)


def training_run_id(ckpt_path: str | Path | None) -> str | None:
    """The W&B id of the run that wrote ``<run dir>/checkpoints/<file>.ckpt``, if it had one."""
    if not ckpt_path:
        return None
    id_file = Path(ckpt_path).expanduser().resolve().parent.parent / ID_FILE
    if not id_file.is_file():
        return None
    return id_file.read_text().strip() or None


def results_table(results: Mapping[str, Mapping[str, float | int]]) -> tuple[list[str], list]:
    """``results.json`` as columns and rows: set, images, then every metric of the first set."""
    metrics = [k for k in next(iter(results.values())) if k != "images"] if results else []
    rows = [[name, int(v["images"]), *(v[m] for m in metrics)] for name, v in results.items()]
    return ["set", "images", *metrics], rows


def log_eval_results(
    cfg: DictConfig,
    model: Any,
    results: Mapping[str, Mapping[str, float | int]],
    per_image_header: Sequence[str],
    per_image_rows: Sequence[Sequence[Any]],
) -> str:
    """Log one evaluation to W&B (see module doc); returns the id of the run written to."""
    import wandb

    entry = to_plain(wandb_logger_configs(cfg)[0])
    run_id = training_run_id(model.path) if model.source == "checkpoint" else None
    common = {
        "project": entry.get("project"),
        "entity": entry.get("entity"),
        "dir": entry.get("save_dir") or str(cfg.paths.output_dir),
        "mode": "offline" if entry.get("offline") else None,
    }
    if run_id is not None:
        run = wandb.init(id=run_id, resume="allow", **common)
        log.info("W&B: results added to the checkpoint's training run %s", run_id)
    else:
        run = wandb.init(
            job_type="eval",
            group=entry.get("group"),
            name=entry.get("name"),
            tags=entry.get("tags"),
            config={
                "method": model.method,
                "scale": model.scale,
                "channels": model.channels,
                "source": model.source,
                "path": model.path,
                "tta": bool(cfg.get("tta")),
            },
            **common,
        )
        log.info("W&B: results in eval run %s", run.id)
    try:
        columns, rows = results_table(results)
        run.log(
            {
                "eval/results": wandb.Table(columns=columns, data=rows),
                "eval/per_image": wandb.Table(
                    columns=list(per_image_header), data=[list(r) for r in per_image_rows]
                ),
            }
        )
        run.summary.update(
            {
                f"eval/{name}/{metric}": value
                for name, values in results.items()
                for metric, value in values.items()
            }
        )
    finally:
        run.finish()
    return run.id
