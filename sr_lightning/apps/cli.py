"""The console scripts' entry points: compose the config, check it, then load the app.

``sr-train``, ``sr-eval``, ``sr-upscale`` and ``sr-export`` start here. Each composes its Hydra
config and validates it against :mod:`sr_lightning.runtime.schema` before anything heavy
(Lightning, torchmetrics, W&B, ONNX, spandrel) is imported, so a bad value or a key typo is
reported in a fraction of a second. Only then is the app's module imported and its Hydra task
run with the composed config. This module imports hydra, omegaconf and the schema only.
"""

from __future__ import annotations

import importlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from sr_lightning.core.config import CONFIG_PATH, register_resolvers
from sr_lightning.runtime.errors import exit_on_user_error, in_multirun, run_cli
from sr_lightning.runtime.output_dir import close_log_files_in
from sr_lightning.runtime.schema import check_config

register_resolvers()


def user_named_run_dir() -> bool:
    """True unless Hydra made this run's dir from the default pattern (no hydra.run.dir=)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return True
    overrides = HydraConfig.get().overrides.hydra
    return any(o.lstrip("+").startswith("hydra.run.dir=") for o in overrides)


def discard_new_run_dir(cfg: DictConfig) -> None:
    """A run refused by the schema leaves no run dir behind, unless the user named it.

    The dir was made by Hydra a moment ago and holds only its own files (.hydra/, the log).
    """
    output_dir = cfg.get("paths", {}).get("output_dir") if "paths" in cfg else None
    if not output_dir or in_multirun() or user_named_run_dir():
        return
    folder = Path(str(output_dir)).resolve()
    if not folder.is_dir() or any(folder.rglob("*.ckpt")) or (folder / "metrics.json").exists():
        return
    close_log_files_in(folder)
    shutil.rmtree(folder, ignore_errors=True)


def checked_app(app: str, prog: str) -> Callable[[], Any]:
    """The Hydra main of ``sr_lightning.apps.<app>``, its config checked before the import."""

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=app)
    def task(cfg: DictConfig) -> Any:
        with exit_on_user_error(prog):
            try:
                check_config(cfg, app)
            except Exception:
                discard_new_run_dir(cfg)
                raise
        module = importlib.import_module(f"sr_lightning.apps.{app}")
        # the app's own Hydra task (hydra.main keeps it as __wrapped__), on this config
        return module.hydra_main.__wrapped__(cfg)

    return task


def train() -> Any:
    """``sr-train``: returns the optimized metric for sweepers."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's RDB storage migrations
    return run_cli("sr-train", checked_app("train", "sr-train"))


def evaluate() -> Any:
    """``sr-eval``."""
    return run_cli("sr-eval", checked_app("eval", "sr-eval"))


def upscale() -> None:
    """``sr-upscale``."""
    run_cli("sr-upscale", checked_app("upscale", "sr-upscale"))


def export() -> None:
    """``sr-export``."""
    run_cli("sr-export", checked_app("export", "sr-export"))
