"""Shared fixtures: the benchmark data root, tiny image folders, and composed Hydra configs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from sr_lightning.core.config import register_resolvers
from tests.helpers.compose import compose_copy
from tests.helpers.data import write_images

# Tiny convolutions are slower with two competing threads than with one (2-core machines,
# pytest-xdist with two workers); one thread per test process is the fast setting.
torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
register_resolvers()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The standard sets (Set5, Set14, T91, BSD200): $SR_DATA_DIR, which CI always sets."""
    root = os.environ.get("SR_DATA_DIR")
    if not root or not (Path(root) / "Set5").is_dir():
        pytest.skip("SR_DATA_DIR is not set to a folder holding Set5 (CI sets it)")
    return Path(root)


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A data root with tiny `train` (6 images) and `val` (2 images) folders."""
    root = tmp_path / "data"
    write_images(root / "train", [(64, 48), (60, 60), (72, 56), (48, 64), (64, 64), (80, 52)])
    write_images(root / "val", [(48, 36), (40, 40)], seed=1)
    return root


ComposeFn = Callable[..., DictConfig]


@pytest.fixture
def compose_train(tmp_path: Path) -> ComposeFn:
    """Compose conf/train.yaml with overrides, outputs under tmp_path, as a test run would.

    Each distinct set of overrides is composed once per session (tests/helpers/compose.py);
    the test gets its own deep copy.

    The Hydra config is registered (``HydraConfig``) and removed from the job config, as
    ``@hydra.main`` does, so ``${hydra:...}`` interpolations resolve.
    """

    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        cfg = compose_copy(config_name, list(overrides), str(tmp_path))
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.job.num = 0
            HydraConfig.instance().set_config(cfg.copy())
            del cfg["hydra"]
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.log_dir = str(tmp_path / "logs")
            cfg.paths.root_dir = str(tmp_path)
            cfg.extras.print_config = False
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
