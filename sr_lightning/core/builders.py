"""Build the run's objects from a composed Hydra config (shared by train, eval and tools)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import hydra
from lightning.pytorch import Callback, LightningDataModule, LightningModule
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# keys of conf/model/*.yaml read by others (Hydra, the data module), not the module; `method`
# and `display` are passed on: the yaml names the method, whatever the class
MODEL_META_KEYS = ("_target_", "patch_size")


def to_plain(cfg: Any) -> Any:
    """A resolved, plain-container copy (what checkpoints and hyperparameters may hold)."""
    if isinstance(cfg, DictConfig | Mapping) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(
            OmegaConf.create(cfg) if not OmegaConf.is_config(cfg) else cfg, resolve=True
        )
    return cfg


def module_class(model_cfg: Mapping) -> type[LightningModule]:
    return hydra.utils.get_class(model_cfg["_target_"])


def build_module(model_cfg: Mapping) -> LightningModule:
    """The method's LightningModule from ``cfg.model``, with plain-container arguments."""
    plain = to_plain(model_cfg)
    cls = module_class(plain)
    kwargs = {k: v for k, v in plain.items() if k not in MODEL_META_KEYS}
    return cls(**kwargs)


def build_datamodule(data_cfg: Mapping) -> LightningDataModule:
    return hydra.utils.instantiate(data_cfg, _convert_="all")


def build_callbacks(
    callbacks_cfg: Mapping | None, trainer_cfg: Mapping | None = None
) -> list[Callback]:
    """Every entry of ``cfg.callbacks`` with a ``_target_``; set an entry to null to drop it.

    Given ``cfg.trainer`` with the progress bar on and no bar among the callbacks, a
    ``TQDMProgressBar`` refreshed every ``log_every_n_steps`` steps (when the logged values
    change) is added on a terminal, and one log line per epoch otherwise (a redirected log
    gets no carriage returns). Lightning's default ``RichProgressBar`` reads the logged
    values back after every batch whatever its refresh rate: a GPU sync and ~1 ms of Python
    per step. The model summary is one line (:class:`~sr_lightning.runtime.console.CompactModelSummary`).
    """
    from lightning.pytorch.callbacks import ModelSummary, ProgressBar, TQDMProgressBar

    from sr_lightning.runtime.console import CompactModelSummary, LineProgress, interactive

    callbacks = [
        _instantiate_user_facing(cb)
        for cb in (callbacks_cfg or {}).values()
        if isinstance(cb, Mapping) and "_target_" in cb
    ]
    trainer_cfg = trainer_cfg or {}
    wants_bar = trainer_cfg.get("enable_progress_bar", True) is not False
    if trainer_cfg and wants_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
        if interactive():
            refresh = int(trainer_cfg.get("log_every_n_steps") or 10)
            callbacks.append(TQDMProgressBar(refresh_rate=refresh))
        else:
            callbacks.append(LineProgress())
    wants_summary = trainer_cfg.get("enable_model_summary", True) is not False
    if trainer_cfg and wants_summary and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks.append(CompactModelSummary())
    return callbacks


def _instantiate_user_facing(cfg: Mapping) -> Any:
    """``instantiate``, but a missing file (e.g. LPIPS backbone weights) surfaces as its own
    one-line error rather than wrapped in Hydra's multi-line InstantiationException."""
    from hydra.errors import InstantiationException

    from sr_lightning.common.pretrained import WeightsUnavailableError

    try:
        return hydra.utils.instantiate(cfg, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, WeightsUnavailableError | FileNotFoundError):
            raise err.__cause__ from None
        raise


def build_loggers(logger_cfg: Mapping | None) -> list[Logger]:
    loggers = [
        hydra.utils.instantiate(lg, _convert_="all")
        for lg in (logger_cfg or {}).values()
        if isinstance(lg, Mapping) and "_target_" in lg
    ]
    for lg in loggers:
        # Lightning's WandbLogger always passes anonymous=None to wandb.init, which makes W&B
        # warn that the (deprecated) setting has no effect; leaving it out changes nothing else
        init = getattr(lg, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous") is None:
            init.pop("anonymous", None)
    return loggers
