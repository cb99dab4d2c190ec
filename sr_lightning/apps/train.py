"""sr-train: the Hydra training app (``python -m sr_lightning.apps.train``).

Returns ``cfg.optimized_metric`` (``val/psnr_best``) so that Hydra sweepers can optimise it.
Every run dir gets ``metrics.json``: the final metrics, the step reached, the best checkpoint
and where training resumed from.

Resuming: with ``resume: auto`` (the default) a job whose run dir already holds a checkpoint
(``checkpoints/last.ckpt``, or Lightning's SLURM ``hpc_ckpt_*.ckpt``) continues from it. That
is what a requeued SLURM job needs: same run dir, so same checkpoints and same W&B run.
``train=false`` validates ``ckpt_path`` (or that checkpoint) instead of training.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from sr_lightning.core.builders import build_datamodule, build_module, to_plain
from sr_lightning.core.config import CONFIG_PATH, register_resolvers
from sr_lightning.core.model_file import UnsafeFileError, read_checkpoint
from sr_lightning.data.cache import configure_compile_cache
from sr_lightning.runtime.atomic import write_atomic
from sr_lightning.runtime.builders import build_callbacks, build_loggers
from sr_lightning.runtime.checks import check_train_config
from sr_lightning.runtime.console import quiet_third_party
from sr_lightning.runtime.csv_log import continue_csv_log
from sr_lightning.runtime.errors import (
    ConfigError,
    exit_on_user_error,
    format_failure,
    in_multirun,
    is_user_error,
    root_cause,
    traceback_text,
)
from sr_lightning.runtime.faults import PREVIOUS_NAME, sigterm_exit_status
from sr_lightning.runtime.hydra_ddp import install_rank_command, job_process_group
from sr_lightning.runtime.output_dir import close_log_files_in
from sr_lightning.runtime.precision import resolve_precision
from sr_lightning.runtime.run_state import SUMMARY_FILE, completed_run, training_budget
from sr_lightning.runtime.wandb_run import assign_run_id, finish_run, update_summary

log = logging.getLogger("sr_lightning.apps.train")

register_resolvers()

RESUME_MODES = ("auto", "never")


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``ckpt_path=last`` means this run dir's latest ``last.ckpt`` when there is one."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = find_resume_checkpoint(output_dir)
        if last is None:
            raise ConfigError(
                f"ckpt_path=last: no checkpoint in {output_dir}/checkpoints (last*.ckpt) nor "
                f"{output_dir}/hpc_ckpt_*.ckpt. Point it at the run to resume: "
                "ckpt_path=last hydra.run.dir=<that run's directory>."
            )
        return str(last)
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist")
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


def select_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """``ckpt_path`` when set; else, with ``resume=auto``, the run dir's own latest checkpoint."""
    if cfg.get("ckpt_path") not in (None, "", "null"):
        return resolve_ckpt_path(cfg.ckpt_path, output_dir)
    mode = str(cfg.get("resume", "auto"))
    if mode not in RESUME_MODES:
        raise ConfigError(
            f"resume={mode}: use resume=auto (continue from this run dir's last.ckpt when it "
            "exists) or resume=never (always start from scratch)"
        )
    found = find_resume_checkpoint(output_dir) if mode == "auto" else None
    return str(found) if found else None


def read_position(path: str | Path) -> dict[str, int]:
    """Epoch and global step saved in a Lightning checkpoint (memory-mapped, weights unread)."""
    ckpt = read_checkpoint(path, mmap=True)  # refuses unsafe pickles and unregistered classes
    return {"epoch": int(ckpt.get("epoch", -1)), "global_step": int(ckpt.get("global_step", -1))}


def checkpoint_position(path: str) -> dict[str, int]:
    """:func:`read_position` of the checkpoint to resume from; an unreadable one is a clear
    error that offers the previous periodic checkpoint (``previous.ckpt``) when it is intact."""
    try:
        return read_position(path)
    except UnsafeFileError:
        raise
    except Exception as err:  # truncated zip, I/O error
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


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (or, with ``train=false``, validate) one configured experiment; returns its metrics."""
    quiet_third_party()
    output_dir = Path(cfg.paths.output_dir)
    fitting = bool(cfg.get("train", True))
    trainer = None
    try:
        if str(OmegaConf.select(cfg, "model.method", default="")) == "bicubic":
            raise ConfigError("bicubic has no weights to train; use sr-eval model=bicubic")
        check_train_config(cfg)
        ckpt_path = select_checkpoint(cfg, output_dir)
        resumed = checkpoint_position(ckpt_path) if ckpt_path and fitting else None
        own = ckpt_path and Path(ckpt_path).resolve().is_relative_to(output_dir.resolve())
        if fitting and own:
            done = completed_run(output_dir, cfg.trainer, resumed and resumed["global_step"])
            if done is not None:
                return report_completed(done, output_dir)
        install_rank_command()
        if cfg.get("seed") is not None:
            L.seed_everything(cfg.seed, workers=True, verbose=False)
        if ckpt_path:
            where = (
                f" (epoch {resumed['epoch']}, global step {resumed['global_step']})"
                if resumed
                else ""
            )
            log.info("%s from %s%s", "resuming" if fitting else "weights", ckpt_path, where)
        elif not fitting:
            log.warning("train=false without ckpt_path: validating an untrained model")
        # the model first: it refuses a scale it cannot do before the data suggests patch sizes
        model = build_module(cfg)
        datamodule = build_datamodule(cfg)
        if cfg.get("extras", {}).get("print_config"):
            print_config(cfg)
        wandb_id = assign_run_id(cfg, output_dir)
        configure_compile_cache(cfg.paths.cache_dir)  # before any torch.compile runs
        callbacks = build_callbacks(cfg.get("callbacks"), cfg.trainer)
        loggers = build_loggers(cfg.get("logger"))
        if resumed:
            continue_csv_log(loggers, ckpt_path)  # one metrics.csv for the whole run
        precision, why = resolve_precision(cfg.trainer)
        if why:
            log.info("trainer.precision=auto -> %s (%s)", precision, why)
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers, precision=precision
        )
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    except BaseException:
        discard_unstarted_run_dir(output_dir, trainer)
        raise

    with job_process_group():
        try:
            metrics = run_stages(cfg, trainer, model, datamodule, ckpt_path)
        except BaseException:
            finish_after_failure()
            discard_unstarted_run_dir(output_dir, trainer)
            raise
        summary = {
            "completed": fitting,
            "metrics": metrics,
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "budget": training_budget(to_plain(cfg.trainer)),
            "best_checkpoint": best_checkpoint(trainer),
            "resumed_from": ckpt_path if resumed else None,
            "resumed_at_step": resumed["global_step"] if resumed else None,
            "wandb_id": wandb_id,
        }
        update_summary(loggers, {"best_checkpoint": summary["best_checkpoint"] or ""})
        finish_run(exit_code=0)
    write_summary(summary, output_dir)
    report(metrics, output_dir, trainer)
    return metrics


def user_named_run_dir() -> bool:
    """True unless Hydra made this run's dir from the default pattern (no hydra.run.dir=)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return True
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return True  # a sweep's job dirs are listed in its summary
    return any(o.lstrip("+").startswith("hydra.run.dir=") for o in hc.overrides.hydra)


@rank_zero_only
def discard_unstarted_run_dir(output_dir: Path, trainer: L.Trainer | None) -> None:
    """A run that failed before its first training step leaves no run dir behind.

    Unless the user named that dir (``hydra.run.dir=``), or it holds a checkpoint or a
    finished run's metrics.json.
    """
    if trainer is not None and trainer.global_step > 0:
        return
    if user_named_run_dir() or not output_dir.is_dir():
        return
    if (output_dir / SUMMARY_FILE).exists() or any(output_dir.rglob("*.ckpt")):
        return
    close_log_files_in(output_dir)
    shutil.rmtree(output_dir, ignore_errors=True)


def report_completed(summary: dict[str, Any], output_dir: Path) -> dict[str, float]:
    """A re-run of a finished run: say so and give its final metrics; nothing is touched."""
    metrics = {k: float(v) for k, v in (summary.get("metrics") or {}).items()}
    line = (
        f"run already complete: {output_dir} (epoch {summary.get('epochs')}, global step "
        f"{summary.get('global_step')}); nothing to train. Raise trainer.max_epochs / "
        "trainer.max_steps to train further, or use resume=never for a fresh run."
    )
    print(line)
    psnr = metrics.get("val/psnr")
    if psnr is not None:
        print(
            f"final val/psnr {psnr:.2f} dB"
            + (f"; best {metrics['val/psnr_best']:.2f} dB" if "val/psnr_best" in metrics else "")
        )
    if summary.get("best_checkpoint"):
        print(f"best checkpoint: {summary['best_checkpoint']}")
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
    """fit or validate, then test when asked; the metrics Lightning reports at the end.

    A fit that stops between two validations (``trainer.max_steps`` or ``max_time`` inside
    an epoch, or before the first ``check_val_every_n_epoch``) is validated once more at its
    end, so the reported ``val/psnr`` is that of the final weights, i.e. of ``last.ckpt``.
    """
    fitting = bool(cfg.get("train", True))
    if fitting:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = callback_metrics(trainer)
        validated_at = getattr(model, "validated_at_step", None)
        if validated_at != trainer.global_step and wants_validation(trainer, datamodule):
            if validated_at is not None:
                why = f"the last validation was at step {validated_at}"
            elif "val/psnr" in metrics:
                why = "no validation ran since the resume"
            else:
                why = (
                    "no validation ran during training (it runs every "
                    f"{trainer.check_val_every_n_epoch} epoch(s), see "
                    "trainer.check_val_every_n_epoch / val_check_interval)"
                )
            log.info(
                "%s; validating the final weights (step %d, last.ckpt) now. The best "
                "checkpoint is chosen among the validations during training.",
                why,
                trainer.global_step,
            )
            best = best_during_fit(trainer, metrics)
            trainer.validate(model, datamodule=datamodule, verbose=False)
            metrics.update(callback_metrics(trainer))
            if best is not None:  # the final validation is not a candidate for the best
                metrics["val/psnr_best"] = best
    else:
        trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = callback_metrics(trainer)
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=None if fitting else ckpt_path)
        metrics.update(callback_metrics(trainer))
    return metrics


def best_during_fit(trainer: L.Trainer, metrics: dict[str, float]) -> float | None:
    """``val/psnr_best`` of the validations during fit: the best checkpoint's value.

    The extra validation of the final weights after fit saves no checkpoint (whether a run
    stops by ``max_steps`` or ``max_time``), so it must not raise the best either: the value
    sweepers and summary.md rank by is one a best checkpoint holds. None when no validation
    ran during fit (no best checkpoint: the final validation's value stands).
    """
    if "val/psnr_best" in metrics:
        return metrics["val/psnr_best"]
    ckpt = getattr(trainer, "checkpoint_callback", None)  # resumed, not validated since
    score = getattr(ckpt, "best_model_score", None)
    if score is not None and getattr(ckpt, "monitor", None) == "val/psnr":
        return float(score)
    return None


def callback_metrics(trainer: L.Trainer) -> dict[str, float]:
    """Lightning's reported metrics as floats (``val/psnr_best`` at val/psnr's float64)."""
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def wants_validation(trainer: L.Trainer, datamodule: L.LightningDataModule) -> bool:
    """True when validation is configured (sets to validate, batches allowed)."""
    if getattr(trainer, "limit_val_batches", 1) == 0 or trainer.interrupted:
        return False
    return bool(getattr(datamodule, "val_set_names", None))


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
    best = best_checkpoint(trainer) if trainer is not None else None
    if best:
        print(f"best checkpoint: {best}")
    print(f"run directory: {output_dir}")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    with exit_on_user_error("sr-train"), sigterm_exit_status():
        try:
            metrics = train(cfg)
        except Exception as err:
            log_failure(err, Path(cfg.paths.output_dir))
            raise
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None or math.isnan(value) else value


def main() -> float | None:
    """``python -m sr_lightning.apps.train``: the config is checked first (apps/cli.py)."""
    from sr_lightning.apps.cli import train as checked_train

    quiet_third_party()  # before Hydra: a sweeper's own start-up (Optuna's alembic) too
    return checked_train()


def log_failure(err: Exception, output_dir: Path) -> None:
    """A sweep job's failure: one line in the log, the traceback in ``<job dir>/error.txt``.

    A single run's user error is printed once by the caller; a bug keeps its traceback.
    """
    if not in_multirun():
        if not is_user_error(root_cause(err)):
            log.error("run failed: %s", format_failure(err))
        return
    log.error("run failed: %s", format_failure(err))
    if output_dir.is_dir():
        (output_dir / "error.txt").write_text(traceback_text(err))
        log.error("traceback: %s", output_dir / "error.txt")


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    from rich.console import Console
    from rich.syntax import Syntax

    Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))


if __name__ == "__main__":
    main()
