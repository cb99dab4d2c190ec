"""sr-train: the Hydra training app (``python -m sr_lightning.train``).

Returns ``cfg.optimized_metric`` (``val/psnr_best``) so that Hydra sweepers can optimise it.
Every run dir gets ``metrics.json``: the final metrics, the step reached, the best checkpoint
and where training resumed from.

Resuming: with ``resume: auto`` (the default) a job whose run dir already holds a checkpoint
(``checkpoints/last.ckpt``, or Lightning's SLURM ``hpc_ckpt_*.ckpt``) continues from it. That
is what a requeued SLURM job needs: same run dir, so same checkpoints and same W&B run.
``train=false`` validates ``ckpt_path`` (or that checkpoint) instead of training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from sr_lightning.atomic import write_atomic
from sr_lightning.builders import build_callbacks, build_datamodule, build_loggers, build_module
from sr_lightning.config import CONFIG_PATH, register_resolvers
from sr_lightning.data.cache import configure_compile_cache
from sr_lightning.faults import PREVIOUS_NAME
from sr_lightning.hydra_ddp import install_rank_command, job_process_group
from sr_lightning.wandb_run import assign_run_id, finish_run, update_summary

log = logging.getLogger("sr_lightning.train")

register_resolvers()

RESUME_MODES = ("auto", "never")
SUMMARY_FILE = "metrics.json"


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``ckpt_path=last`` means this run dir's latest ``last.ckpt`` when there is one."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = find_resume_checkpoint(output_dir)
        return str(last) if last else None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    return ckpt_path


def find_resume_checkpoint(output_dir: Path) -> Path | None:
    """The newest of this run dir's ``checkpoints/last*.ckpt`` and Lightning's SLURM
    ``hpc_ckpt_*.ckpt`` (several ``save_last`` callbacks make ``last-v1.ckpt``, ...)."""
    candidates = [
        *(output_dir / "checkpoints").glob("last*.ckpt"),
        *output_dir.glob("hpc_ckpt_*.ckpt"),
    ]
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime) if existing else None


def config_digest(cfg: DictConfig) -> str:
    """A fingerprint of the resolved job config: what a finished run is recognised by."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()


def finished_run(cfg: DictConfig, output_dir: Path) -> dict[str, Any] | None:
    """This run dir's ``metrics.json`` when it records a finished run of this very config.

    Re-running a killed sweep in place (same ``hydra.sweep.dir``) reads its finished jobs back
    instead of retraining them. Any change of config (more epochs, another lr) trains again,
    resuming from ``last.ckpt``; so do ``resume=never``, ``ckpt_path=...`` and ``train=false``.
    """
    explicit = cfg.get("ckpt_path") not in (None, "", "null")
    if explicit or str(cfg.get("resume", "auto")) != "auto" or not cfg.get("train", True):
        return None
    try:
        summary = json.loads((output_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("config_digest") == config_digest(cfg) else None


def select_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """``ckpt_path`` when set; else, with ``resume=auto``, the run dir's own latest checkpoint."""
    if cfg.get("ckpt_path") not in (None, "", "null"):
        return resolve_ckpt_path(cfg.ckpt_path, output_dir)
    mode = str(cfg.get("resume", "auto"))
    if mode not in RESUME_MODES:
        raise ValueError(
            f"resume={mode}: use resume=auto (continue from this run dir's last.ckpt when it "
            "exists) or resume=never (always start from scratch)"
        )
    found = find_resume_checkpoint(output_dir) if mode == "auto" else None
    return str(found) if found else None


def read_position(path: str | Path) -> dict[str, int]:
    """Epoch and global step saved in a Lightning checkpoint (memory-mapped, weights unread)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"epoch": int(ckpt.get("epoch", -1)), "global_step": int(ckpt.get("global_step", -1))}


def checkpoint_position(path: str) -> dict[str, int]:
    """:func:`read_position` of the checkpoint to resume from; an unreadable one is a clear
    error that offers the previous periodic checkpoint (``previous.ckpt``) when it is intact."""
    try:
        return read_position(path)
    except Exception as err:  # truncated zip, bad pickle, I/O error
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        previous = Path(path).with_name(PREVIOUS_NAME)
        try:
            at = read_position(previous)
            offer = (
                f"The previous periodic checkpoint {previous} (epoch {at['epoch']}, global step "
                f"{at['global_step']}) is intact: resume from it with ckpt_path={previous}."
            )
        except Exception:
            offer = "Remove it to start this run over, or pass another ckpt_path."
        raise ValueError(
            f"cannot resume from {path}: it is truncated or corrupt ({reason}). {offer}"
        ) from None


@rank_zero_only
def keep_previous_csv_logs(loggers: list[Logger]) -> None:
    """Lightning's CSVLogger deletes an existing metrics.csv; a resumed run keeps it aside."""
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        metrics = Path(logger.log_dir) / "metrics.csv"
        if metrics.is_file():
            n = 1
            while (kept := metrics.with_name(f"metrics.before-resume-{n}.csv")).exists():
                n += 1
            metrics.rename(kept)
            log.info("kept the metrics logged before resuming in %s", kept)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (or, with ``train=false``, validate) one configured experiment; returns its metrics."""
    install_rank_command()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    digest = config_digest(cfg)  # before assign_run_id writes the W&B id into cfg
    done = finished_run(cfg, output_dir)
    if done is not None:
        log.info("%s holds a finished run of this config: not retraining it", output_dir)
        report(done["metrics"], output_dir, None)
        return done["metrics"]
    fitting = bool(cfg.get("train", True))
    ckpt_path = select_checkpoint(cfg, output_dir)
    resumed = checkpoint_position(ckpt_path) if ckpt_path and fitting else None
    if ckpt_path:
        where = (
            f" (epoch {resumed['epoch']}, global step {resumed['global_step']})" if resumed else ""
        )
        log.info("%s from %s%s", "resuming" if fitting else "weights", ckpt_path, where)
    elif not fitting:
        log.warning("train=false without ckpt_path: validating an untrained model")
    wandb_id = assign_run_id(cfg, output_dir)

    datamodule = build_datamodule(cfg.data)
    configure_compile_cache(cfg.paths.cache_dir)  # before any torch.compile runs
    model = build_module(cfg.model)
    callbacks = build_callbacks(cfg.get("callbacks"), cfg.trainer)
    loggers = build_loggers(cfg.get("logger"))
    if resumed:
        keep_previous_csv_logs(loggers)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    with job_process_group():
        try:
            metrics = run_stages(cfg, trainer, model, datamodule, ckpt_path)
        except BaseException:
            finish_after_failure()
            raise
        summary = {
            "metrics": metrics,
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "best_checkpoint": best_checkpoint(trainer),
            "resumed_from": ckpt_path if resumed else None,
            "resumed_at_step": resumed["global_step"] if resumed else None,
            "wandb_id": wandb_id,
            "config_digest": digest,
        }
        update_summary(loggers, {"best_checkpoint": summary["best_checkpoint"] or ""})
        finish_run(exit_code=0)
    write_summary(summary, output_dir)
    report(metrics, output_dir, trainer)
    return metrics


def finish_after_failure() -> None:
    """End the W&B run of a failed or preempted job without masking why it stopped: SIGTERM
    reaches the job's whole process group, so W&B's service may already be gone, and its
    ``ConnectionResetError`` would turn a requeue into a failed job."""
    try:
        finish_run(exit_code=1)
    except Exception as err:
        log.warning("could not close the W&B run (%s: %s)", type(err).__name__, err)


def run_stages(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None,
) -> dict[str, float]:
    """fit or validate, then test when asked; the metrics Lightning reports at the end."""
    fitting = bool(cfg.get("train", True))
    if fitting:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    else:
        trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=None if fitting else ckpt_path)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return metrics


def best_checkpoint(trainer: L.Trainer) -> str | None:
    ckpt = getattr(trainer, "checkpoint_callback", None)
    return (ckpt.best_model_path or None) if ckpt is not None else None


@rank_zero_only
def write_summary(summary: dict[str, Any], output_dir: Path) -> None:
    """``metrics.json`` in the run dir, written whole or not at all (sweep summaries read it)."""
    write_atomic(output_dir / SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=True) + "\n")


@rank_zero_only
def report(metrics: dict[str, float], output_dir: Path, trainer: L.Trainer | None) -> None:
    """Tell the user what the run reached and where everything went."""
    psnr, bicubic = metrics.get("val/psnr"), metrics.get("val/psnr_bicubic")
    if psnr is not None:
        line = f"final val/psnr {psnr:.2f} dB"
        if bicubic is not None:
            line += f" (bicubic {bicubic:.2f} dB, {psnr - bicubic:+.2f} dB)"
        if "val/psnr_best" in metrics:
            line += f"; best {metrics['val/psnr_best']:.2f} dB"
        log.info(line)
        print(line)
    best = best_checkpoint(trainer) if trainer is not None else None
    if best:
        print(f"best checkpoint: {best}")
    print(f"run directory: {output_dir}")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.get("extras", {}).get("print_config"):
        print_config(cfg)
    try:
        metrics = train(cfg)
    except Exception as err:
        log_failure(err, cfg)
        raise
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None or math.isnan(value) else value


def log_failure(err: Exception, cfg: DictConfig) -> None:
    """Put a failed job's traceback in its own log: a sweep only reports the exception."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    # a single run's traceback is printed by Hydra right after this line
    log.error("run failed: %s: %s", type(err).__name__, err, exc_info=in_sweep)


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    from rich.console import Console
    from rich.syntax import Syntax

    Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))


if __name__ == "__main__":
    main()
