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

from sr_lightning.core.derived import NET_KEYS, derive, net_config, takes

log = logging.getLogger(__name__)

# keys of conf/model/*.yaml read by others (Hydra, the data module), not the module; `method`
# and `display` are passed on: the yaml names the method, whatever the class
MODEL_META_KEYS = ("_target_", "patch_lr", "patch_hr")


def to_plain(cfg: Any) -> Any:
    """A resolved, plain-container copy (what checkpoints and hyperparameters may hold)."""
    if isinstance(cfg, DictConfig | Mapping) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(
            OmegaConf.create(cfg) if not OmegaConf.is_config(cfg) else cfg, resolve=True
        )
    return cfg


def module_class(model_cfg: Mapping) -> type[LightningModule]:
    return hydra.utils.get_class(model_cfg["_target_"])


def build_module(cfg: Mapping) -> LightningModule:
    """The method's LightningModule from a composed config: ``cfg.model`` with plain-container
    arguments, and the run's scale, channels and loss (:func:`~sr_lightning.core.derived.
    derive`); its nets (``model.net``, SRGAN's ``model.discriminator``) get the scale and
    channels as their classes name them; a module that takes ``scales`` gets ``data.scales``."""
    derived = derive(cfg)
    plain = to_plain(cfg["model"])
    cls = module_class(plain)
    kwargs = {k: v for k, v in plain.items() if k not in MODEL_META_KEYS}
    kwargs.update(derived.module_args())
    if takes(cls, "scales"):
        kwargs["scales"] = derived.scales
    for key in NET_KEYS:
        if isinstance(kwargs.get(key), Mapping):
            kwargs[key] = net_config(kwargs[key], derived.scale, derived.channels)
    return cls(**kwargs)


def build_datamodule(cfg: Mapping) -> LightningDataModule:
    """``cfg.data``'s data module, with the run's scale, channels and HR patch; a
    ``cfg.degradation`` other than bicubic goes to it as ``lr_model`` (a data module of your
    own needs that argument only then)."""
    derived = derive(cfg)
    degradation = cfg.get("degradation")
    lr_model = to_plain(degradation) if degradation is not None else None
    extra = dict(derived.data_args())
    if lr_model is not None and lr_model.get("name", "bicubic") != "bicubic":
        extra["lr_model"] = lr_model
    return hydra.utils.instantiate(cfg["data"], _convert_="all", **extra)
