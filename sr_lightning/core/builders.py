"""Build the run's module and data from a composed Hydra config (shared by train, eval and tools).

The trainer's callbacks and loggers are built in :mod:`sr_lightning.runtime.builders`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import hydra
from lightning.pytorch import LightningDataModule, LightningModule
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


def build_datamodule(data_cfg: Mapping, degradation: Mapping | None = None) -> LightningDataModule:
    """``cfg.data``'s data module; ``degradation`` (``cfg.degradation``) other than bicubic goes
    to it as ``lr_model`` (a data module of your own needs that argument only then)."""
    lr_model = to_plain(degradation) if degradation is not None else None
    if lr_model is None or lr_model.get("name", "bicubic") == "bicubic":
        return hydra.utils.instantiate(data_cfg, _convert_="all")
    return hydra.utils.instantiate(data_cfg, _convert_="all", lr_model=lr_model)
