"""The modules' running aggregates (epoch loss, best val/psnr) survive a checkpoint exactly, in
the checkpoint format older runs wrote, and stay out of the state dict."""

from __future__ import annotations

import io
import math

import pytest
import torch

from sr_lightning.modules.espcn import ESPCNModule
from sr_lightning.modules.tracking import (
    BEST_KEY,
    EPOCH_LOSS_KEY,
    BestScore,
    EpochLoss,
    load_tracking,
    save_tracking,
)

ESPCN = {
    "net": {"_target_": "sr_lightning.nets.espcn.ESPCN", "scale": 2, "channels": 1},
    "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
    "scale": 2,
    "channels": 1,
}
# (batch mean loss, batch size) of an epoch's steps; the checkpoint falls after the third
STEPS = [(0.731, 16), (0.52, 16), (1.0 / 3.0, 7), (0.41, 16), (2.5e-3, 3)]
SAVED_AFTER = 3
PSNRS = [27.123456789012345, 29.876543210987654, float("nan"), 29.876543210987650, 28.5]


def through_file(checkpoint: dict) -> dict:
    """What a resumed run reads: the checkpoint saved and loaded with weights_only."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def weighted_mean(steps) -> float:
    return math.fsum(loss * n for loss, n in steps) / sum(n for _, n in steps)


def test_epoch_loss_resumed_from_a_checkpoint_is_the_sample_weighted_mean() -> None:
    uninterrupted, before = EpochLoss(), EpochLoss()
    for loss, n in STEPS:
        uninterrupted.update(torch.tensor(loss), n)
    for loss, n in STEPS[:SAVED_AFTER]:
        before.update(torch.tensor(loss), n)
    checkpoint = {"sr_lightning": {}}
    save_tracking(checkpoint, "sr_lightning", before, BestScore())
    saved = through_file(checkpoint)[EPOCH_LOSS_KEY]
    assert saved["count"] == 39 and isinstance(saved["count"], int)
    assert float(saved["sum"]) == pytest.approx(0.731 * 16 + 0.52 * 16 + 7 / 3, rel=1e-6)

    after = EpochLoss()
    after.update(torch.tensor(9.0), 4)  # the new process's state is replaced, not added to
    after.load_checkpoint_state(saved)
    for loss, n in STEPS[SAVED_AFTER:]:
        after.update(torch.tensor(loss), n)
    assert after.count == sum(n for _, n in STEPS)
    assert float(after.mean()) == pytest.approx(weighted_mean(STEPS), rel=1e-6)
    assert torch.equal(after.mean(), uninterrupted.mean())  # bit for bit


def test_an_empty_epoch_is_saved_as_none_and_restores_empty() -> None:
    empty = EpochLoss()
    assert empty.checkpoint_state() == {"sum": None, "count": 0}
    restored = EpochLoss()
    restored.update(torch.tensor(1.0), 2)
    restored.load_checkpoint_state({"sum": None, "count": 0})
    assert restored.count == 0
    restored.load_checkpoint_state(None)  # a checkpoint without the key
    assert restored.count == 0


def test_a_nan_or_inf_loss_makes_the_epoch_loss_non_finite() -> None:
    loss = EpochLoss()
    loss.update(torch.tensor(0.5), 4)
    assert loss.finite()
    loss.update(torch.tensor(float("inf")), 4)
    loss.update(torch.tensor(0.5), 4)
    assert not loss.finite()
    loss.reset()
    loss.update(torch.tensor(float("nan")), 1)
    assert not loss.finite()


def test_best_score_is_the_float64_max_and_ignores_nan() -> None:
    best = BestScore()
    logged = [best.add(torch.tensor(p, dtype=torch.float64)) for p in PSNRS]
    assert all(v.dtype == torch.float64 for v in logged)
    running = [max(p for p in PSNRS[: i + 1] if not math.isnan(p)) for i in range(len(PSNRS))]
    assert [float(v) for v in logged] == running  # exact: the float64 val/psnr itself
    assert best.value() == 29.876543210987654


def test_best_score_before_any_number_is_the_nan_itself() -> None:
    best = BestScore()
    assert best.value() is None
    assert math.isnan(float(best.add(torch.tensor(float("nan"), dtype=torch.float64))))
    assert float(best.add(torch.tensor(20.25, dtype=torch.float64))) == 20.25


def test_best_score_survives_a_checkpoint_bit_for_bit() -> None:
    before = BestScore()
    for p in PSNRS[:3]:
        before.add(torch.tensor(p, dtype=torch.float64))
    checkpoint = {"sr_lightning": {}}
    save_tracking(checkpoint, "sr_lightning", EpochLoss(), before)
    saved = through_file(checkpoint)
    assert saved["sr_lightning"][BEST_KEY] == 29.876543210987654

    after = BestScore()
    load_tracking(saved, "sr_lightning", EpochLoss(), after)
    # a later, slightly lower epoch does not replace it; the logged best is the saved float64
    assert float(after.add(torch.tensor(PSNRS[3], dtype=torch.float64))) == 29.876543210987654
    assert float(after.add(torch.tensor(30.0, dtype=torch.float64))) == 30.0


def test_no_best_is_saved_before_a_validation() -> None:
    checkpoint = {"sr_lightning": {}}
    save_tracking(checkpoint, "sr_lightning", EpochLoss(), BestScore())
    assert BEST_KEY not in checkpoint["sr_lightning"]


def test_an_old_checkpoint_resumes_its_best_from_the_psnr_model_checkpoint() -> None:
    """Written before the best was in the metadata: the val/psnr ModelCheckpoint's best."""
    callbacks = {
        "ModelCheckpoint{'monitor': 'val/lpips', 'mode': 'min'}": {
            "monitor": "val/lpips",
            "best_model_score": torch.tensor(0.2),
        },
        "ModelCheckpoint{'monitor': 'val/psnr', 'mode': 'max'}": {
            "monitor": "val/psnr",
            "best_model_score": torch.tensor(31.25, dtype=torch.float64),
        },
    }
    old = {
        "sr_lightning": {"method": "espcn", "scale": 2, "channels": 1},
        EPOCH_LOSS_KEY: {"sum": torch.tensor(12.5), "count": 25},
        "callbacks": callbacks,
    }
    epoch, best = EpochLoss(), BestScore()
    load_tracking(through_file(old), "sr_lightning", epoch, best)
    assert best.value() == 31.25
    assert epoch.count == 25 and float(epoch.mean()) == 0.5
    # a non-finite saved best (a run that only diverged) is not restored
    load_tracking({"sr_lightning": {BEST_KEY: float("nan")}}, "sr_lightning", epoch, best)
    assert best.value() is None and epoch.count == 0


def test_a_module_checkpoint_round_trip_keeps_the_state_dict_to_the_net() -> None:
    module = ESPCNModule(**ESPCN)
    assert {k.split(".")[0] for k in module.state_dict()} == {"net"}
    for loss, n in STEPS[:SAVED_AFTER]:
        module.epoch_loss.update(torch.tensor(loss), n)
    module.psnr_best.add(torch.tensor(PSNRS[1], dtype=torch.float64))
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    saved = through_file(checkpoint)
    assert saved["sr_lightning"][BEST_KEY] == PSNRS[1]
    assert saved["sr_lightning"]["method"] == "espcn" and saved["sr_lightning"]["scale"] == 2

    resumed = ESPCNModule(**ESPCN)
    resumed.load_state_dict(saved["state_dict"])  # strict: nothing but the net's tensors
    resumed.on_load_checkpoint(saved)
    assert resumed.psnr_best.value() == PSNRS[1]
    assert resumed.epoch_loss.count == 39
    assert torch.equal(resumed.epoch_loss.mean(), module.epoch_loss.mean())


def test_the_best_stays_float64_when_a_trainer_casts_the_module_to_half() -> None:
    module = ESPCNModule(**ESPCN)
    module.to(torch.bfloat16)  # what Trainer(precision="bf16-true") does to the module
    assert next(module.net.parameters()).dtype == torch.bfloat16
    assert module.psnr_best.max_value.dtype == torch.float64
    assert float(module.psnr_best.add(torch.tensor(PSNRS[0], dtype=torch.float64))) == PSNRS[0]


def test_the_best_keeps_float64_after_the_trainer_moves_the_module_to_its_device() -> None:
    """Lightning's ``module.to(device)`` resets every child's dtype attribute to the default
    (float32); the best must still equal the float64 val/psnr it came from, bit for bit."""
    module = ESPCNModule(**ESPCN)
    module.to("cpu")
    for psnr in PSNRS[:2]:
        best = module.psnr_best.add(torch.tensor(psnr, dtype=torch.float64))
    assert best.dtype == torch.float64 and float(best) == PSNRS[1]
