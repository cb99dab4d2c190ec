"""sr-train: the Hydra training app (``python -m sr_lightning.train``).

Returns ``cfg.optimized_metric`` (``val/psnr_best``) so that Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from sr_lightning.builders import build_callbacks, build_datamodule, build_loggers, build_module
from sr_lightning.config import CONF_DIR, register_resolvers

log = logging.getLogger("sr_lightning.train")

register_resolvers()


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``ckpt_path=last`` means this run dir's ``checkpoints/last.ckpt`` when it exists."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    return ckpt_path


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and optionally test) one configured experiment; returns the final metrics."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = build_datamodule(cfg.data)
    model = build_module(cfg.model)
    callbacks = build_callbacks(cfg.get("callbacks"))
    loggers = build_loggers(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(
            model,
            datamodule=datamodule,
            ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), output_dir),
        )
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    report(metrics, output_dir, trainer)
    return metrics


@rank_zero_only
def report(metrics: dict[str, float], output_dir: Path, trainer: L.Trainer) -> None:
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
    ckpt = getattr(trainer, "checkpoint_callback", None)
    if ckpt is not None and ckpt.best_model_path:
        print(f"best checkpoint: {ckpt.best_model_path}")
    print(f"run directory: {output_dir}")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.get("extras", {}).get("print_config"):
        print_config(cfg)
    metrics = train(cfg)
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None or math.isnan(value) else value


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    from rich.console import Console
    from rich.syntax import Syntax

    Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))


if __name__ == "__main__":
    main()
