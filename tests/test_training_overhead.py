"""Proposed tests for the lead's patches (logging without per-step cost, imresize under autocast)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.imresize import imresize
from sr_lightning.modules.espcn import ESPCNModule

ESPCN = {
    "net": {"_target_": "sr_lightning.nets.espcn.ESPCN", "scale": 2, "channels": 1},
    "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
    "scale": 2,
    "channels": 1,
}


def fit(tiny_data, module, log_every, callbacks=()):
    dm = SRDataModule(
        str(tiny_data),
        ["train"],
        [],
        scale=2,
        channels=1,
        patch_size=16,
        batch_size=4,
        patches_per_image=4,
    )
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        log_every_n_steps=log_every,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(module, datamodule=dm)
    return trainer


def test_epoch_loss_is_the_mean_over_every_step_and_steps_log_on_lightnings_rule(tiny_data):
    losses, fresh = [], set()

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = float(outputs["loss"])
            losses.append(loss)
            value = trainer.callback_metrics.get("train/loss_step")
            if value is not None and float(value) == pytest.approx(loss, rel=1e-7):
                fresh.add(trainer.global_step)  # logged by this very step

    torch.manual_seed(0)
    trainer = fit(tiny_data, ESPCNModule(**ESPCN), log_every=2, callbacks=[Record()])
    assert len(losses) == 6  # 6 images x 4 patches / batch 4
    epoch = float(trainer.callback_metrics["train/loss_epoch"])
    assert epoch == pytest.approx(sum(losses) / 6, rel=1e-6)
    assert fresh == {2, 4, 6}  # Lightning writes on-step values every log_every_n_steps


def test_a_nan_loss_still_stops_training(tiny_data):
    module = ESPCNModule(**ESPCN)
    original = module.compute_loss

    def poisoned(sr, hr):
        total, terms = original(sr, hr)
        if module.global_step == 2:
            total = total * float("nan")
            terms = {"pixel": total}
        return total, terms

    module.compute_loss = poisoned
    with pytest.raises(FloatingPointError, match=r"global step 2 \(term: pixel"):
        fit(tiny_data, module, log_every=50)


def test_imresize_ignores_autocast():
    x = torch.rand(2, 1, 24, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        down, up = imresize(x, 1 / 3), imresize(x, 3.0)
    torch.testing.assert_close(down, imresize(x, 1 / 3))
    torch.testing.assert_close(up, imresize(x, 3.0))
