"""Shared fixtures: the benchmark data root, tiny image folders, and composed Hydra configs."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image

from sr_lightning.core.config import CONF_DIR, register_resolvers

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


def write_images(
    folder: Path, sizes: Sequence[tuple[int, int]], mode: str = "RGB", seed: int = 0
) -> list[Path]:
    """Smooth random images (so SR has something to learn) of the given (w, h) sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        coarse = rng.integers(0, 256, size=(max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC).convert(mode)
        path = folder / f"img_{i:03d}.png"
        image.save(path)
        paths.append(path)
    return paths


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

    The Hydra config is registered (``HydraConfig``) and removed from the job config, as
    ``@hydra.main`` does, so ``${hydra:...}`` interpolations resolve.
    """

    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
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


def tiny_overrides(data_root: Path) -> list[str]:
    """Overrides for a seconds-long CPU run on the `tiny_data` folders."""
    return [
        "data=folder",
        f"paths.data_dir={data_root}",
        "data.train_sets=[train]",
        "data.val_sets=[val]",
        "data.test_sets=[val]",
        "data.batch_size=4",
        "data.patches_per_image=4",
        "trainer=cpu",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "logger=csv",
    ]


def make_datamodule(root: Path, **overrides):
    """A set-up SRDataModule over the `tiny_data` folders (x2 RGB, 16 px patches, batch 4)."""
    from sr_lightning.data.datamodule import SRDataModule

    args = dict(
        data_dir=str(root),
        train_sets=["train"],
        val_sets=["val"],
        scale=2,
        channels=3,
        patch_size=16,
        batch_size=4,
        patches_per_image=2,
    )
    dm = SRDataModule(**{**args, **overrides})
    dm.setup("fit")
    return dm
