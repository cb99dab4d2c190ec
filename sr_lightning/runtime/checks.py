"""Start-up checks of a training config: every value that cannot work fails here, by key.

Run before anything is built, so that ``scale=0`` or ``data.batch_size=0`` is one line naming
the key, not a ``ZeroDivisionError`` or PyTorch's message from deep inside a loader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from omegaconf import DictConfig

from sr_lightning.core.builders import to_plain
from sr_lightning.data.datasets import set_spec
from sr_lightning.data.images import list_images
from sr_lightning.runtime.errors import ConfigError


def _positive_int(value, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value}: must be an integer >= {minimum}.")
    return value


def _sets(value, key: str) -> Sequence:
    if value is None:
        return []
    if isinstance(value, str | Mapping) or not isinstance(value, Sequence):
        raise ConfigError(f"{key}={value}: a list of folder names, paths or {{name, dir}}.")
    return value


def check_train_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first key of ``cfg`` that cannot work."""
    scale = _positive_int(cfg.get("scale"), "scale")
    if cfg.get("channels") not in (1, 3):
        raise ConfigError(f"channels={cfg.get('channels')}: use 1 (luma, MATLAB Y) or 3 (RGB).")
    data = cfg.data
    _positive_int(data.get("batch_size"), "data.batch_size")
    _positive_int(data.get("patches_per_image"), "data.patches_per_image")
    patch = _positive_int(data.get("patch_size"), "data.patch_size")
    if patch < 2 * scale:
        raise ConfigError(
            f"data.patch_size={patch} is smaller than two LR pixels at x{scale}; "
            f"use at least data.patch_size={2 * scale} (a multiple of the scale)."
        )
    train_sets = _sets(data.get("train_sets"), "data.train_sets")
    if cfg.get("train", True) and not train_sets:
        raise ConfigError(
            "data.train_sets is required: name the folders of HR training images, e.g. "
            "data=folder data.train_sets=[/path/to/hr] (folder names are looked up under "
            "paths.data_dir)."
        )
    val_sets = _sets(data.get("val_sets"), "data.val_sets")
    test_sets = _sets(data.get("test_sets"), "data.test_sets")
    named = {"data.val_sets": val_sets}
    if cfg.get("train", True):
        named["data.train_sets"] = train_sets
    if cfg.get("test"):
        named["data.test_sets"] = test_sets
    for key, specs in named.items():
        check_folders(data, specs, key)


def check_folders(data: DictConfig, specs: Sequence, key: str) -> None:
    """Every set's folder of ``key`` exists and holds the images it lists (none is decoded)."""
    for spec in to_plain(list(specs)):
        _, folder, include = set_spec(spec, data.get("data_dir") or ".")
        try:
            list_images(folder, include, bool(data.get("recursive")))
        except FileNotFoundError as err:
            raise ConfigError(f"{key}: {err}") from None
