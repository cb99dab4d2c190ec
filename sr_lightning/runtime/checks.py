"""Start-up checks of a training config: every value that cannot work fails here, by key.

Run before anything is built, so that ``scale=0`` or ``data.batch_size=0`` is one line naming
the key, not a ``ZeroDivisionError`` or PyTorch's message from deep inside a loader. Values
are checked by the typed schema (:mod:`sr_lightning.runtime.schema`, also run by the console
scripts before the heavy imports); this adds what needs the file system.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from sr_lightning.core.builders import to_plain
from sr_lightning.data.datasets import set_spec
from sr_lightning.data.images import list_images
from sr_lightning.runtime.errors import ConfigError
from sr_lightning.runtime.schema import check_config


def check_train_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first key of ``cfg`` that cannot work.

    Types, ranges and unknown keys are the schema's (:mod:`sr_lightning.runtime.schema`);
    what needs the file system or the whole run is checked here.
    """
    check_config(cfg, "train")
    data = cfg.data
    train_sets = data.get("train_sets") or []
    if cfg.get("train", True) and not train_sets:
        raise ConfigError(
            "data.train_sets is required: name the folders of HR training images, e.g. "
            "data=folder data.train_sets=[/path/to/hr] (folder names are looked up under "
            "paths.data_dir)."
        )
    val_sets = data.get("val_sets") or []
    test_sets = data.get("test_sets") or []
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
