"""With a seed and trainer.deterministic=true, two CPU runs give identical results."""

from __future__ import annotations

import torch
from omegaconf import open_dict

from sr_lightning.apps.train import train
from tests.helpers.config import tiny_overrides


def test_seeded_deterministic_runs_are_identical(tiny_data, compose_train, tmp_path):
    results, weights = [], []
    for i in range(2):
        cfg = compose_train(*tiny_overrides(tiny_data), "seed=123", "trainer.deterministic=true",
                            "scale=2")  # fmt: skip
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / f"run{i}")
        results.append(train(cfg))
        ckpt = torch.load(tmp_path / f"run{i}" / "checkpoints" / "last.ckpt", weights_only=True)
        weights.append(ckpt["state_dict"])
    assert results[0]["val/psnr"] == results[1]["val/psnr"]
    assert results[0]["train/loss_epoch"] == results[1]["train/loss_epoch"]
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


def test_a_different_seed_gives_a_different_run(tiny_data, compose_train, tmp_path):
    losses = []
    for seed in (1, 2):
        cfg = compose_train(*tiny_overrides(tiny_data), f"seed={seed}", "trainer.max_epochs=1",
                            "scale=2")  # fmt: skip
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / f"seed{seed}")
        losses.append(train(cfg)["train/loss_epoch"])
    assert losses[0] != losses[1]
