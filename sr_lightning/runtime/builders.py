"""Build the trainer's callbacks and loggers from a composed Hydra config (``cfg.callbacks``,
``cfg.logger``), with the progress bar and model summary sr-train shows.

The module and the data module are built by :mod:`sr_lightning.core.builders`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hydra
from hydra.errors import InstantiationException
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelSummary, ProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import Logger

from sr_lightning.common.pretrained import WeightsUnavailableError
from sr_lightning.runtime.console import CompactModelSummary, LineProgress, interactive


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
