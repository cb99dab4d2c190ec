"""Overrides shared by the tests that compose or run conf/train.yaml."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from sr_lightning.core.config import CONF_DIR


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


def model_overrides(name: str) -> list[str]:
    """``model=<name>`` and the loss it cannot train without: a model config picks no other
    group, and a model with a discriminator (SRGAN) needs an adversarial term (``loss=gan``)."""
    model = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    return [f"model={name}", *(["loss=gan"] if "discriminator" in model else [])]


# SRGAN small enough for seconds-long CPU tests, and offline (no VGG / AlexNet weights)
TINY_SRGAN = [
    "model=srgan",
    "loss=gan",
    "channels=3",
    "model.patch_hr=24",
    "model.net.num_blocks=2",
    "model.net.width=16",
    "model.discriminator.base_width=8",
    "model.discriminator.dense_width=32",
    "loss.content.pretrained=false",
    "callbacks.perceptual.lpips.enabled=false",  # no AlexNet offline
    "model.init_from=null",
]
