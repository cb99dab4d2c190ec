"""Real sr-train checkpoints of tiny models, made in a second."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sr_lightning.core.builders import build_module
from sr_lightning.core.config import CONF_DIR, register_resolvers
from tests.helpers.config import TINY_SRGAN

register_resolvers()

TINY = {
    # post-upsampling, RGB, BatchNorm
    "srresnet": [
        "model=srresnet",
        "scale=2",
        "channels=3",
        "model.net.num_blocks=2",
        "model.net.width=16",
    ],
    # pre-upsampling, luma
    "srcnn": ["model=srcnn", "scale=3", "channels=1", "model.valid_loss=false"],
    # generator + discriminator + VGG + EMA
    "srgan": [*TINY_SRGAN, "scale=2"],
}


def compose_model(*overrides: str):
    """conf/train.yaml with overrides (plain Hydra compose, no run dir)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


class _Pairs(Dataset):
    def __init__(self, scale: int, channels: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.lr = torch.rand(2, channels, 12, 12, generator=gen)
        self.hr = torch.rand(2, channels, 12 * scale, 12 * scale, generator=gen)
        self.scale = scale

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        return {"lr": self.lr[i], "hr": self.hr[i]}


def spread_weights(net: nn.Module, std: float = 0.05, seed: int = 1) -> None:
    """Visible outputs (SRCNN's paper init, std 1e-3, gives an almost black image)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)


def make_checkpoint(path: Path, method: str) -> Path:
    """A real sr-train checkpoint: one Lightning training step, then ``save_checkpoint``."""
    torch.manual_seed(0)
    module = build_module(compose_model(*TINY[method]))
    data = _Pairs(module.scale, module.channels)

    def collate(items: list[dict]) -> dict:
        return {
            "lr": torch.stack([i["lr"] for i in items]),
            "hr": torch.stack([i["hr"] for i in items]),
            "scale": module.scale,
        }

    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(data, batch_size=2, collate_fn=collate))
    spread_weights(module.net)  # SRGAN: the live generator now differs from its EMA
    trainer.save_checkpoint(path)
    return path
