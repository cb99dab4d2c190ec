"""DDP on the CPU (2 processes, gloo): exact validation, one output dir per job, also in sweeps.

Set5 has 5 images: rank 0 evaluates 3 and rank 1 evaluates 2. The metrics must still be the
mean over the 5 images, as in one process, to 1e-6 dB; uneven batch counts must not hang.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from sr_lightning.apps.train import train
from tests.helpers.config import tiny_overrides
from tests.helpers.sweeps import job_dirs, only_sweep_dir, read_summary, run_cli

pytestmark = pytest.mark.slow

SET5 = ["baby", "bird", "butterfly", "head", "woman"]
# published bicubic Set5 x2, Y channel (SRCNN / VDSR tables)
BICUBIC_SET5_X2 = 33.66


def ddp_overrides(tiny_data: Path, data_dir: Path, *extra: str) -> list[str]:
    base = [a for a in tiny_overrides(tiny_data) if a != "trainer=cpu"]
    return [
        *base,
        f"data.val_sets=[{data_dir / 'Set5'}]",
        "scale=2",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        *extra,
    ]


def only_run_dir(root: Path) -> Path:
    """The single run dir under ``root/logs``: no rank made one of its own."""
    assert not (root / "logs" / "train" / "multiruns").exists()
    runs = list((root / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def run_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def validate_in_one_process(compose_train, tiny_data, data_dir, ckpt: Path, *extra) -> dict:
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        f"data.val_sets=[{data_dir / 'Set5'}]",
        "scale=2",
        "train=false",
        f"ckpt_path={ckpt}",
        *extra,
    )
    return train(cfg)


def test_espcn_set5_psnr_on_two_processes_equals_one_process(
    tiny_data, data_dir, compose_train, tmp_path
):
    """Validation (train=false) of one checkpoint under DDP and in one process.
    (Validation inside a DDP fit, through the DDP wrapper, is the SRGAN test below.)"""
    train(compose_train(*tiny_overrides(tiny_data), "scale=2", "trainer.max_epochs=1"))
    ckpt = tmp_path / "weights.ckpt"
    (tmp_path / "run" / "checkpoints" / "last.ckpt").rename(ckpt)

    code, out = run_cli(
        ddp_overrides(tiny_data, data_dir, "train=false", f"ckpt_path={ckpt}"), tmp_path
    )
    assert code == 0, out[-3000:]
    run_dir = only_run_dir(tmp_path)
    ddp = run_metrics(run_dir)
    single = validate_in_one_process(compose_train, tiny_data, data_dir, ckpt)
    assert single["val/psnr_bicubic"] == pytest.approx(BICUBIC_SET5_X2, abs=0.005)
    for key in ("val/psnr", "val/ssim", "val/psnr_bicubic"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key

    # the per-image table gathered from both ranks (3 + 2 images): each image exactly once
    with open(run_dir / "images" / "epoch000" / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == SET5
    mean = sum(float(r["psnr"]) for r in rows) / len(rows)
    assert mean == pytest.approx(ddp["val/psnr"], abs=1e-6)
    # rank 0 alone writes the run dir: one config, one CSV log
    assert [p.name for p in run_dir.glob("**/config.yaml")] == ["config.yaml"]
    assert [p.name for p in run_dir.glob("**/metrics.csv")] == ["metrics.csv"]


def test_ddp_multirun_makes_exactly_one_dir_per_job(tiny_data, data_dir, tmp_path):
    """Lightning restarts the command line for rank 1; under -m that would rerun the sweep."""
    args = [a for a in ddp_overrides(tiny_data, data_dir) if not a.startswith("scale=")]
    # crops cut from the device cache, positions sharded by Lightning's DistributedSampler
    args.append("data.device_cache=true")
    code, out = run_cli(["-m", *args, "scale=2,3"], tmp_path)
    assert code == 0, out[-3000:]
    sweep = only_sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    assert {p.name for p in sweep.iterdir() if p.is_dir()} == {"0", "1", ".summary"}
    for job in jobs:
        assert [p.name for p in job.glob("**/config.yaml")] == ["config.yaml"]
        last = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        # 4 patches per image (x2: 6 images; x3: the 4 of at least 51 px), batch 4 on 2 ranks
        assert last["global_step"] == {"0": 6 * 4 // 8, "1": 4 * 4 // 8}[job.name]
        bicubic = run_metrics(job)["val/psnr_bicubic"]
        assert bicubic == pytest.approx({"0": 33.66, "1": 30.39}[job.name], abs=0.005)
    assert sorted(r["scale"] for r in read_summary(sweep)) == ["2", "3"]


TINY_SRGAN = [
    "model=srgan",
    "loss=gan",
    "loss.content.pretrained=false",
    "callbacks.perceptual.lpips.enabled=false",  # no AlexNet offline
    "channels=3",
    "model.patch_hr=24",
    "model.net.num_blocks=1",
    "model.net.width=8",
    "model.discriminator.base_width=8",
    "model.discriminator.dense_width=16",
    "model.init_from=null",
    "data.batch_size=2",
]


def test_srgan_with_batch_norm_and_ema_matches_one_process_on_set5(
    tiny_data, data_dir, compose_train, tmp_path
):
    """Two networks, manual optimization, BN buffers and an EMA generator: rank 1 must evaluate
    its Set5 images with exactly rank 0's weights. LPIPS (a seeded random AlexNet) is synced
    like PSNR: the mean over the 5 images, whatever rank scored them."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    backbone = tmp_path / "alexnet-random.pth"
    torch.save({f"features.{k}": v for k, v in alexnet().features.state_dict().items()}, backbone)
    lpips = [
        "callbacks.perceptual.lpips.enabled=true",
        f"callbacks.perceptual.lpips.weights_path={backbone}",
    ]
    gan = [a for a in TINY_SRGAN if not a.startswith("callbacks.perceptual")] + lpips
    args = [a for a in ddp_overrides(tiny_data, data_dir) if not a.startswith("data.batch_size")]
    code, out = run_cli([*args, *gan], tmp_path)
    assert code == 0, out[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert [p.name for p in run_dir.glob("**/config.yaml")] == ["config.yaml"]
    ddp_fit = run_metrics(run_dir)
    single = validate_in_one_process(
        compose_train,
        tiny_data,
        data_dir,
        run_dir / "checkpoints" / "last.ckpt",
        *[a for a in gan if not a.startswith(("trainer.", "data."))],
    )
    for key in ("val/psnr", "val/ssim", "val/psnr_bicubic", "val/lpips"):
        assert ddp_fit[key] == pytest.approx(single[key], abs=1e-6), key
