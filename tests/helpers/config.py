"""Overrides shared by the tests that compose or run conf/train.yaml."""

from __future__ import annotations

from pathlib import Path


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
