"""``val/psnr_best`` is the best of the whole run, also after a run is killed and resumed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from sr_lightning.apps.train import train
from tests.helpers.config import tiny_overrides

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*",
    "ignore:.*LeafSpec.*",
    "ignore:Checkpoint directory .* exists and is not empty",
)


class Killed(Exception):
    pass


class KillAtEpoch(Callback):
    """The job dies as the given epoch starts (its predecessors are checkpointed)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed(f"killed at epoch {self.epoch}")


class ZeroNetAtStart(Callback):
    """After the resume, make the net useless, so the best PSNR lies before the kill."""

    def on_train_start(self, trainer, pl_module) -> None:
        with torch.no_grad():
            for p in pl_module.net.parameters():
                p.zero_()


def logged(path: Path, key: str) -> list[float]:
    with path.open() as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_psnr_best_is_the_best_over_the_whole_resumed_run(compose_train, tiny_data) -> None:
    args = [
        "model=espcn",
        "scale=2",
        *tiny_overrides(tiny_data),
        "trainer.max_epochs=4",
        "callbacks.image_panels=null",
    ]
    here = "tests.test_resume_best"
    cfg = compose_train(*args, f"+callbacks.kill={{_target_: {here}.KillAtEpoch, epoch: 2}}")
    with pytest.raises(Killed):
        train(cfg)
    cfg = compose_train(*args, f"+callbacks.zero={{_target_: {here}.ZeroNetAtStart}}")
    metrics = train(cfg)

    logs = Path(cfg.paths.output_dir) / "csv"
    after_file = next(p for p in logs.rglob("metrics.csv"))  # the whole run, one file
    before, after = logged(after_file, "val/psnr")[:2], logged(after_file, "val/psnr")[2:]
    assert len(before) == 2 and len(after) == 2
    assert max(before) > max(after), "the test needs the best epoch before the kill"
    best = max(before + after)
    assert metrics["val/psnr_best"] == pytest.approx(best, abs=1e-4)
    assert logged(after_file, "val/psnr_best")[-1] == pytest.approx(best, abs=1e-4)
