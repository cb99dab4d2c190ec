"""The training app end to end: run dir contents, checkpoints, metrics, config errors."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from sr_lightning.apps.train import train
from sr_lightning.runtime.output_dir import check_output_dir, unwritable_reason
from tests.helpers.config import tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_short_run_writes_checkpoints_logs_and_returns_best(tiny_data, compose_train, tmp_path):
    cfg = compose_train(*tiny_overrides(tiny_data), "scale=2", "trainer.max_epochs=3")
    metrics = train(cfg)
    run = tmp_path / "run"
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(p.startswith("best-epoch") for p in ckpts)

    rows = read_metrics(run)
    val = [float(r["val/psnr"]) for r in rows if r.get("val/psnr")]
    assert len(val) == 3
    assert metrics["val/psnr_best"] == pytest.approx(max(val), abs=1e-4)
    bicubic = [float(r["val/psnr_bicubic"]) for r in rows if r.get("val/psnr_bicubic")]
    assert len(set(bicubic)) == 1  # the baseline of fixed images does not move

    # checkpoints hold plain containers only and say what they are
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["sr_lightning"] == {
        "method": "espcn",
        "module": "sr_lightning.modules.espcn.ESPCNModule",
        "scale": 2,
        "channels": 1,
        "val_psnr_best": pytest.approx(max(val), abs=1e-4),
    }
    assert ckpt["hyper_parameters"]["net"]["_target_"] == "sr_lightning.nets.espcn.ESPCN"
    assert ckpt["global_step"] == 3 * (6 * 4 // 4)


def test_last_layer_runs_at_a_tenth_of_the_lr_when_asked(tiny_data, compose_train):
    from sr_lightning.core.builders import build_module

    # the paper's x0.1; the ESPCN preset itself trains every layer at the full lr
    preset = build_module(compose_train(*tiny_overrides(tiny_data)))
    (group,) = preset.configure_optimizers()["optimizer"].param_groups
    assert len(group["params"]) == len(list(preset.net.parameters()))
    cfg = compose_train(*tiny_overrides(tiny_data), "model.last_layer_lr_mult=0.1")
    module = build_module(cfg)
    groups = module.configure_optimizers()["optimizer"].param_groups
    lr = cfg.model.optimizer.lr
    assert [g["lr"] for g in groups] == [lr, pytest.approx(lr * 0.1)]
    last = {id(p) for p in module.net.last_layer_parameters()}
    assert {id(p) for p in groups[1]["params"]} == last


def test_tensorboard_logger_writes_events_beside_csv(tiny_data, compose_train, tmp_path):
    cfg = compose_train(*tiny_overrides(tiny_data), "logger=tensorboard", "trainer.max_epochs=1")
    train(cfg)
    run = tmp_path / "run"
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert (run / "csv" / "metrics.csv").is_file()


@pytest.mark.parametrize(
    "override,error",
    [
        ("model=espnc", (ConfigCompositionException, HydraException)),
        ("trainer.max_epoch=3", (ConfigCompositionException, ConfigAttributeError, ConfigKeyError)),
    ],
)
def test_config_typos_fail_with_hydra_errors(compose_train, override, error):
    with pytest.raises(error):
        compose_train(override)


def test_every_config_group_option_composes(compose_train):
    for group in ("model", "data", "loss", "trainer", "logger", "debug", "experiment"):
        for path in sorted((REPO / "conf" / group).glob("*.yaml")):
            if path.stem == "default" and group == "debug":
                continue
            cfg = compose_train(f"{group}={path.stem}")
            assert cfg.scale in (2, 3, 4) and cfg.channels in (1, 3), f"{group}={path.stem}"


def run_cli(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sr_lightning.apps.train", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_fast_dev_run_reports_where_results_went(tiny_data, tmp_path):
    args = [*tiny_overrides(tiny_data), "debug=fdr", "extras.print_config=false"]
    out = run_cli(args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = list((tmp_path / "logs" / "debug" / "runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / ".hydra" / "config.yaml").is_file()
    assert f"run directory: {runs[0]}" in out.stdout


@pytest.mark.slow
def test_two_runs_started_together_get_their_own_dirs(tiny_data, tmp_path):
    args = [*tiny_overrides(tiny_data), "debug=fdr", "extras.print_config=false"]
    cmd = [sys.executable, "-m", "sr_lightning.apps.train", *args]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    assert len(list((tmp_path / "logs" / "debug" / "runs").iterdir())) == 2


@pytest.mark.slow
def test_overfit_preset_drives_the_loss_down(tiny_data, compose_train, tmp_path):
    cfg = compose_train(*tiny_overrides(tiny_data), "debug=overfit", "trainer.max_epochs=60")
    train(cfg)
    losses = [
        float(r["train/loss_epoch"])
        for r in read_metrics(tmp_path / "run")
        if r.get("train/loss_epoch")
    ]
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize(
    "flags,key", [([], "hydra.run.dir"), (["-m", "scale=2,3"], "hydra.sweep.dir")]
)
def test_an_output_dir_that_cannot_be_made_fails_in_one_line(tiny_data, tmp_path, flags, key):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a user's file")
    out = run_cli(
        [*flags, *tiny_overrides(tiny_data), "debug=fdr", f"{key}={blocker}/run"], tmp_path
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: cannot create {key}={blocker}/run: {blocker} is a file, not a folder. "
        f"Pass {key}=<a writable folder>, or move every run with paths.log_dir=<folder>."
    )
    assert blocker.read_text() == "a user's file"


def test_output_dir_check_creates_what_hydra_would(tmp_path):
    target = tmp_path / "a" / "b"
    check_output_dir(target, "hydra.run.dir")
    assert target.is_dir()
    assert unwritable_reason(tmp_path / "x") is None
    with pytest.raises(SystemExit) as exit_info:
        check_output_dir("/proc/sr_lightning_test/run", "hydra.run.dir")  # mkdir fails even as root
    assert exit_info.value.code == 2
