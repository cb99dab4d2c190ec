"""Exact resume: a seeded run SIGKILLed mid-epoch and resumed ends identical to one that never
stopped (weights, optimizer, schedulers, EMA, loops, callbacks), tensor by tensor."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from sr_lightning.apps.train import train
from sr_lightning.data.datamodule import _positions_as_is
from sr_lightning.data.datasets import CropPositions, load_set
from sr_lightning.data.resumable import resumable_loader
from tests.helpers.config import TINY_SRGAN, tiny_overrides
from tests.helpers.kill_switch import Crash
from tests.helpers.resume import RUN, assert_same

REPO = Path(__file__).resolve().parents[1]

GAN = [
    *TINY_SRGAN,
    # D-only warm-up and D/G alternation: both counted from the restored global step
    "model.d_warmup_steps=3",
    "model.d_steps_per_g=2",
]
# Lightning's own bookkeeping that a restart does not carry over and nothing reads:
# * the epoch `ready` counter is reset to `completed` on a restart at an epoch start and
#   never raised again (the `total` and `processed` counters agree);
# * ModelCheckpoint's `current_score` (the score of the last file it wrote in this process)
#   is saved but not restored; only `best_model_score` and the best paths are.


pytestmark = pytest.mark.filterwarnings(
    "ignore:VGGContentLoss uses randomly initialised:UserWarning",
    "ignore:.*does not have many workers.*",
    "ignore:.*smaller than the logging interval.*",
)


def _subprocess_env() -> dict[str, str]:
    # one thread, as in the test process (conftest), so every run uses the same kernels
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _train_cmd(tiny_data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sr_lightning.apps.train", *tiny_overrides(tiny_data), *RUN,
            f"hydra.run.dir={run_dir}", *extra]  # fmt: skip


def _killed_then_resumed(tiny_data: Path, run_dir: Path, kill_at: int, resume: str, *extra: str):
    killed = subprocess.run(
        _train_cmd(tiny_data, run_dir, *extra, "+callbacks.kill._target_=tests.helpers.kill_switch.KillAtStep",
                   f"+callbacks.kill.step={kill_at}"),
        capture_output=True, text=True, timeout=600, env=_subprocess_env(),
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < saved < kill_at  # the kill lost the steps since the last periodic checkpoint
    resumed = subprocess.run(
        _train_cmd(tiny_data, run_dir, *extra, *([resume] if resume else [])),
        capture_output=True, text=True, timeout=600, env=_subprocess_env(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"global step {saved})" in resumed.stderr + resumed.stdout  # it did resume
    assert "not resumable" not in resumed.stderr  # Lightning's mid-epoch warning
    return saved


def _uninterrupted(compose_train, tiny_data: Path, run_dir: Path, *extra: str) -> None:
    cfg = compose_train(*tiny_overrides(tiny_data), *RUN, *extra)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)


def _final_checkpoints_equal(ref: Path, res: Path) -> dict:
    a = torch.load(ref / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(res / "checkpoints" / "last.ckpt", weights_only=True)
    assert_same(a, b, roots=(str(ref), str(res)))
    return a


def _logged(path: Path, below_step: float = float("inf")) -> set[tuple[str, str, str]]:
    with path.open() as f:
        return {
            (row["step"], key, value)
            for row in csv.DictReader(f)
            if row["step"] and int(row["step"]) < below_step
            for key, value in row.items()
            if value and key != "step"
        }


def _logs_continue(ref: Path, res: Path, resumed_at: int) -> None:
    """csv/metrics.csv holds the whole resumed run: the rows logged up to the checkpoint, then
    the resumed run's, exactly what the run that never stopped logged, each value once (the
    steps the killed run logged after its checkpoint are not left in twice)."""
    assert _logged(res / "csv" / "metrics.csv") == _logged(ref / "csv" / "metrics.csv")
    assert _value_rows(res / "csv" / "metrics.csv") == _value_rows(ref / "csv" / "metrics.csv")
    assert not list((res / "csv").glob("metrics.before-resume-*.csv"))


def _value_rows(path: Path) -> list[tuple[str, str, str]]:
    """Every (step, key, value) of the file, with repeats (a duplicated row shows twice)."""
    with path.open() as f:
        return sorted(
            (row["step"], key, value)
            for row in csv.DictReader(f)
            for key, value in row.items()
            if value and key != "step"
        )


def test_a_run_crashed_mid_epoch_resumes_bit_identical(tiny_data, compose_train, tmp_path):
    ref, res = tmp_path / "uninterrupted", tmp_path / "crashed"
    _uninterrupted(compose_train, tiny_data, ref)
    crash = [
        "+callbacks.crash._target_=tests.helpers.kill_switch.CrashAtStep",
        "+callbacks.crash.step=18",
    ]
    with pytest.raises(Crash):
        _uninterrupted(compose_train, tiny_data, res, *crash)
    assert torch.load(res / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 16
    _uninterrupted(compose_train, tiny_data, res, "ckpt_path=last")
    final = _final_checkpoints_equal(ref, res)
    assert final["global_step"] == 24 and final["sr_lightning_epoch_loss"]["count"] == 0
    _logs_continue(ref, res, 16)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a run killed, then resumed (600 s each at most)
def test_a_run_killed_mid_epoch_resumes_bit_identical(tiny_data, compose_train, tmp_path):
    ref, res = tmp_path / "uninterrupted", tmp_path / "killed"
    _uninterrupted(compose_train, tiny_data, ref)
    # kill at step 18, in the second epoch; last.ckpt is from step 16
    saved = _killed_then_resumed(tiny_data, res, 18, "ckpt_path=last")
    assert saved == 16
    final = _final_checkpoints_equal(ref, res)
    assert final["global_step"] == 24 and final["sr_lightning_epoch_loss"]["count"] == 0
    _logs_continue(ref, res, saved)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a run killed, then resumed (600 s each at most)
@pytest.mark.parametrize(
    "kill_at,extra",
    [
        (13, ["data.num_workers=2"]),  # last.ckpt from the epoch boundary, two workers
        (7, ["data.num_workers=1", "data.device_cache=true"]),  # crops cut from the device cache
        (18, ["data.num_workers=1", *GAN]),  # SRGAN: EMA, D/G alternation, two optimizers
        (10, ["data.num_workers=2", *GAN]),  # SRGAN in its first epoch, two workers
        # degradations seeded per sample (issue #25): the batch counter is in the checkpoint
        (18, ["degradation=dn"]),  # fresh DN noise per patch, resumed after the periodic ckpt
        (10, ["data.num_workers=1", "degradation=realesrgan"]),  # second-order, one worker
    ],
)
def test_killed_runs_resume_bit_identical(tiny_data, compose_train, tmp_path, kill_at, extra):
    ref, res = tmp_path / "uninterrupted", tmp_path / "killed"
    _uninterrupted(compose_train, tiny_data, ref, *extra)
    # resume: auto, i.e. rerunning the same command continues from the run dir's last.ckpt
    _killed_then_resumed(tiny_data, res, kill_at, "", *extra)
    _final_checkpoints_equal(ref, res)


def test_a_restored_loader_hands_out_the_rest_of_the_epoch(tiny_data):
    dataset = CropPositions(load_set("train", tiny_data, channels=1), 16, 4)
    loader = resumable_loader(dataset, batch_size=4, seed=3, collate_fn=_positions_as_is)
    loader.sampler.set_epoch(1)
    epoch = list(loader)  # 6 batches
    it = iter(loader)
    first = [next(it) for _ in range(2)]
    state = loader.state_dict()
    assert state == {"seed": 3, "epoch": 1, "batches": 2}

    fresh = resumable_loader(dataset, batch_size=4, seed=99, collate_fn=_positions_as_is)
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert len(rest) == len(epoch) - 2
    for got, want in zip(first + rest, epoch, strict=True):
        assert torch.equal(got, want)
    # a state saved after the epoch's last batch resumes at the next epoch's first batch
    fresh.load_state_dict({"seed": 3, "epoch": 1, "batches": len(epoch)})
    loader.sampler.set_epoch(2)
    assert torch.equal(next(iter(fresh)), next(iter(loader)))
    # another epoch draws other crops and another order
    assert not torch.equal(next(iter(fresh)), epoch[0])
