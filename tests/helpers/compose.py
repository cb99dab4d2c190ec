"""Composing a config once per session and handing each test its own copy.

Composition (reading every yaml of conf/, resolving defaults lists) takes ~0.2 s; a deep
copy ~0.02 s. Tests compose the same overrides again and again, differing only in their own
``tmp_path``: the composition is cached with that path replaced by a token, and each test
gets a deep copy with its path put back (as lightning-hydra-template's conftest composes
once per session and hands out copies).
"""

from __future__ import annotations

import copy
import functools

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, open_dict, read_write

from sr_lightning.core.config import CONF_DIR

TOKEN = "@TEST_TMP@"


@functools.cache
def _composed(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose(config_name, overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _put_back(node: DictConfig | ListConfig, tmp: str) -> None:
    """Replace the token by ``tmp`` in every string value, in place, without resolving
    interpolations (and keeping the Hydra node's structured type)."""
    keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        child = node._get_node(key)
        if isinstance(child, DictConfig | ListConfig):
            _put_back(child, tmp)
            continue
        value = child._value() if child is not None else None
        if isinstance(value, str) and TOKEN in value:
            node[key] = value.replace(TOKEN, tmp)


def compose_copy(config_name: str, overrides: list[str], tmp: str) -> DictConfig:
    """``compose(config_name, overrides)`` with the Hydra node, from the session's cache."""
    key = tuple(o.replace(tmp, TOKEN) for o in overrides)
    cached = _composed(config_name, key)
    cfg = copy.deepcopy(cached)
    if any(TOKEN in o for o in key):
        with read_write(cfg), open_dict(cfg):
            _put_back(cfg, tmp)
    return cfg


def compose_app(config_name: str, *overrides: str) -> DictConfig:
    """An app's composed config (conf/<config_name>.yaml) without the Hydra node, as
    ``@hydra.main`` hands it to the app: for tests that call an app's ``run`` directly."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
