"""Tiny image folders and a set-up data module over them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


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
