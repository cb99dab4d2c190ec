"""A researcher's first hour: no silent wrong runs, no lost results, errors in one block.

Each test is one promise of docs/training.md (Errors, Console output, Re-running a finished
run) or of the README, tried the way a new user trips over it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import OmegaConf
from PIL import Image

from sr_lightning.apps.train import train
from sr_lightning.runtime.checks import check_train_config
from sr_lightning.runtime.errors import (
    ConfigError,
    UserError,
    format_failure,
    is_user_error,
    root_cause,
    user_message,
)
from sr_lightning.runtime.run_state import completed_run, training_budget
from sr_lightning.runtime.sweep import SweepSummary
from tests.helpers.config import tiny_overrides

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*LeafSpec.*",
    "ignore:.*log_every_n_steps.*",
    "ignore:.*could not find the monitored key.*",
)


def sr_cli(module: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m <module> ARGS`` in ``cwd`` with stdout and stderr captured (not a TTY)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    for key in ("HYDRA_FULL_ERROR", "SR_DEBUG"):
        if key not in env:
            full_env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# -- 1. data=folder without a training set --------------------------------------------------


def test_a_folder_run_without_train_sets_is_refused_by_key(compose_train, tiny_data):
    """data=folder inherited the sample images through its `???`: it must name the key."""
    cfg = compose_train("data=folder", f"paths.data_dir={tiny_data}", "data.val_sets=[val]")
    with pytest.raises(ConfigError, match=r"data\.train_sets is required"):
        train(cfg)


# -- 2. re-running a finished run ---------------------------------------------------------


def test_rerunning_a_finished_run_keeps_and_reports_its_results(
    compose_train, tiny_data, tmp_path, capsys
):
    overrides = [*tiny_overrides(tiny_data), "trainer.max_epochs=1"]
    first = train(compose_train(*overrides))
    run = tmp_path / "run"
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert (run / "csv" / "metrics.csv") in files
    capsys.readouterr()

    again = train(compose_train(*overrides))  # the same command (resume=auto finds last.ckpt)
    assert again == pytest.approx(first)
    assert "run already complete" in capsys.readouterr().out
    now = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert now == files, "nothing moved, emptied or rewritten"

    # a larger budget is not finished: completion is decided by one reusable function
    summary_step = json.loads((run / "metrics.json").read_text())["global_step"]
    bigger = OmegaConf.create({"max_epochs": 2, "max_steps": -1, "max_time": None})
    assert completed_run(run, bigger, summary_step) is None
    same = OmegaConf.create(training_budget(compose_train(*overrides).trainer))
    assert completed_run(run, same, summary_step)["global_step"] == summary_step
    assert completed_run(run, same, summary_step + 1) is None  # a newer checkpoint


# -- 3. SRCNN at every scale ----------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srcnn_patch_follows_the_scale(compose_train, scale):
    """The README sweep `model=srcnn,espcn,vdsr scale=2,3,4` failed SRCNN at x2 and x4."""
    from sr_lightning.core.builders import build_datamodule

    cfg = compose_train("model=srcnn", f"scale={scale}")
    check_train_config(cfg)
    patch = build_datamodule(cfg).patch_size  # its patch check passes
    assert patch % scale == 0 and 33 <= patch < 33 + scale  # the paper's 33, rounded up


# -- 4. ckpt_path=last without a checkpoint -------------------------------------------------


def test_ckpt_path_last_without_a_checkpoint_says_where_it_looked(compose_train, tiny_data):
    cfg = compose_train(*tiny_overrides(tiny_data), "ckpt_path=last")
    with pytest.raises(ConfigError, match=r"ckpt_path=last: no checkpoint in .*hydra\.run\.dir="):
        train(cfg)


# -- 5. and 6. sweep summaries --------------------------------------------------------------


def _job(sweep: Path, num: int, overrides: list[str]):
    job_dir = sweep / str(num)
    job_dir.mkdir(parents=True)
    config = OmegaConf.create(
        {
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweep": {"dir": str(sweep)},
                "runtime": {"output_dir": str(job_dir)},
                "job": {"num": num},
                "overrides": {"task": overrides},
            }
        }
    )
    return job_dir, config


def test_a_failed_jobs_summary_shows_the_root_cause(tmp_path):
    from sr_lightning.data.datamodule import SRDataModule

    try:
        try:
            SRDataModule(data_dir=".", train_sets=["x"], scale=2, patch_size=33)
        except ValueError as err:
            raise InstantiationException("Error in call to target 'SRDataModule'") from err
    except InstantiationException as wrapped:
        error = wrapped
    sweep = tmp_path / "sweep"
    _, config = _job(sweep, 0, ["model=srcnn", "scale=2"])
    SweepSummary().on_job_end(config, JobReturn(status=JobStatus.FAILED, _return_value=error))
    md = (sweep / "summary.md").read_text()
    sentence = "data.patch_size=33 is not a multiple of scale [2]; use a multiple of 2"
    assert sentence in md and "e.g. data.patch_size=32." in md, "the whole sentence"
    assert "InstantiationException" not in md


def test_eval_sweep_summaries_have_set_by_psnr_y_ssim_y_columns(tmp_path, compose_train):
    from hydra.core.hydra_config import HydraConfig

    compose_train(config_name="eval")  # registers the eval app's Hydra config
    patterns = list(HydraConfig.get().callbacks.sweep_summary.metrics)
    assert patterns[:2] == ["*/psnr_y", "*/ssim_y"]
    sweep = tmp_path / "sweep"
    summary = SweepSummary(patterns)
    for num, (scale, psnr, psnr14) in enumerate([(2, 33.66, 30.24), (4, 28.42, 26.0)]):
        job_dir, config = _job(sweep, num, ["model=bicubic", f"scale={scale}"])
        results = {
            "Set5": {"psnr_y": psnr, "ssim_y": 0.9, "images": 5},
            "Set14": {"psnr_y": psnr14, "ssim_y": 0.8, "images": 14},
        }
        (job_dir / "results.json").write_text(json.dumps(results))
        summary.on_job_end(config, JobReturn(status=JobStatus.COMPLETED, _return_value=psnr))
    header = next(
        line for line in (sweep / "summary.md").read_text().splitlines() if "| job" in line
    )
    assert header == (
        "| job | scale | Set5/psnr_y | Set5/ssim_y | Set14/psnr_y | Set14/ssim_y | status | dir |"
    )
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("job,model,scale,Set5/psnr_y,Set5/ssim_y,Set14/psnr_y,Set14/ssim_y")
    assert rows[1].startswith("0,bicubic,2,33.66,0.9,30.24,0.8"), "best Set5 PSNR first"
    assert "val/psnr" not in (sweep / "summary.md").read_text()


# -- 7. errors in one block -----------------------------------------------------------------


def test_a_user_error_is_one_block_with_no_config_dump_and_no_run_dir(tmp_path):
    out = sr_cli("sr_lightning.apps.train", ["data.batch_size=0"], tmp_path)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "sr-train: error: data.batch_size=0: must be an integer >= 1.",
        "  (HYDRA_FULL_ERROR=1 shows the traceback)",
    ]
    assert "_target_" not in out.stdout, "no config dump"
    assert not (tmp_path / "logs" / "train" / "runs").exists() or not any(
        (tmp_path / "logs" / "train" / "runs").iterdir()
    ), "a run that never started leaves no run dir"
    named = sr_cli("sr_lightning.apps.train", ["scale=0", "hydra.run.dir=mine"], tmp_path)
    assert named.returncode == 2 and "scale=0" in named.stderr
    assert (tmp_path / "mine").is_dir(), "a dir the user named is kept"
    full = sr_cli("sr_lightning.apps.train", ["scale=0"], tmp_path, HYDRA_FULL_ERROR="1")
    assert full.returncode != 0 and "Traceback" in full.stderr and "ConfigError" in full.stderr


def test_a_key_typo_suggests_the_closest_keys(tmp_path):
    out = sr_cli("sr_lightning.apps.train", ["trainer.max_step=3"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "did you mean trainer.max_steps?" in out.stderr
    ev = sr_cli("sr_lightning.apps.eval", ["model=bicubic", "scale=2", "tta_=true"], tmp_path)
    assert (
        ev.returncode == 2 and "sr-eval: error:" in ev.stderr and "did you mean tta?" in ev.stderr
    )


def test_the_vgg_weights_error_is_one_block():
    """Hydra's instantiation wraps it (4 chained tracebacks before); the block is its own."""
    from sr_lightning.common.download import DownloadError
    from sr_lightning.losses.content import VGGWeightsUnavailableError

    try:
        try:
            try:
                raise DownloadError("could not reach https://download.pytorch.org/...")
            except DownloadError as err:
                raise VGGWeightsUnavailableError("the pretrained VGG19 weights ...") from err
        except VGGWeightsUnavailableError as err:
            raise InstantiationException("Error in call to target 'SRGANModule'") from err
    except InstantiationException as wrapped:
        error = wrapped
    assert isinstance(root_cause(error), VGGWeightsUnavailableError)
    assert is_user_error(root_cause(error))
    assert user_message(error) == "the pretrained VGG19 weights ..."


def test_bugs_are_not_user_errors():
    """A ValueError from inside a library is not ours to explain: it keeps its traceback."""
    try:
        int("x")
    except ValueError as err:
        assert not is_user_error(err)
    assert is_user_error(UserError("x"))
    assert format_failure(ValueError("no patches")) == "ValueError: no patches"


# -- 8. values checked at start-up, by key --------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("scale=0", r"^scale=0: must be an integer >= 1"),
        ("data.batch_size=0", r"^data\.batch_size=0"),
        ("channels=2", r"^channels=2"),
        ("model.patch_lr=1", r"^model\.patch_lr=1: the training patch \(3 HR pixels\)"),
        ("+model.patch_size=48", r"^model\.patch_size: moved; .*model\.patch_hr"),
        ("data.val_sets=[nope]", r"^data\.val_sets: image folder not found: .*nope"),
    ],
)
def test_bad_values_are_named_at_start_up(compose_train, tiny_data, override, message):
    cfg = compose_train(*tiny_overrides(tiny_data), override)
    with pytest.raises(ConfigError, match=message):
        train(cfg)


def test_an_unsupported_scale_is_named_before_patch_sizes(compose_train, tiny_data):
    cfg = compose_train(*tiny_overrides(tiny_data), "model=srresnet", "scale=5")
    with pytest.raises(Exception) as info:
        train(cfg)
    message = str(root_cause(info.value))
    assert "scale=5 is not supported by SRResNet" in message and "patch_size" not in message


def test_a_too_small_validation_image_is_named_at_set_up(compose_train, tiny_data):
    Image.new("RGB", (3, 3)).save(tiny_data / "val" / "tiny.png")
    cfg = compose_train(*tiny_overrides(tiny_data), "trainer.max_epochs=1")
    with pytest.raises(UserError, match=r"val image .*val/tiny\.png \(3x3\) is too small"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists(), "failed before training"


# -- 9. a corrupt image: one message, once --------------------------------------------------


def test_a_corrupt_image_is_reported_once_and_consistently(tiny_data, caplog):
    from sr_lightning.data.datamodule import SRDataModule
    from sr_lightning.data.images import ImageLoadError

    good = (tiny_data / "train" / "img_000.png").read_bytes()
    (tiny_data / "train" / "cut.png").write_bytes(good[:120])  # a truncated PNG
    (tiny_data / "train" / "junk.png").write_bytes(b"not an image")

    def datamodule(skip_bad: bool) -> SRDataModule:
        return SRDataModule(
            data_dir=str(tiny_data), train_sets=["train"], val_sets=["val"], scale=2,
            channels=3, patch_size=16, batch_size=2, skip_bad=skip_bad,
        )  # fmt: skip

    caplog.set_level(logging.WARNING)
    dm = datamodule(skip_bad=False)
    with pytest.raises(ImageLoadError, match=r"set data\.skip_bad=true"):
        dm.prepare_data()
        dm.setup("fit")
    assert not [r for r in caplog.records if "skipping" in r.getMessage()], "no skip, no warning"

    caplog.clear()
    dm = datamodule(skip_bad=True)
    dm.prepare_data()
    dm.setup("fit")
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 2 and {"cut.png" in s or "junk.png" in s for s in skipped} == {True}
    assert not [s for s in skipped if "skip_bad" in s], "it is set: no advice to set it"
    assert len(dm.train_set) == 6


# -- 11. and 12. make train's output ---------------------------------------------------------

NOISE = [
    r"litlogger",
    r"LeafSpec",
    r"Total FLOPs",
    r"FLOPs",
    r"will be deleted",
    r"exists and is not empty",
    r"anonymous",
    r"alembic",
    r"could not find the monitored key",
]
MAKE_TRAIN_TINY = ["trainer.max_epochs=2", "data.patches_per_image=4"]


def check_quiet(text: str) -> None:
    found = [p for p in NOISE if re.search(p, text)]
    assert not found, f"noise in make train's output: {found}\n{text[-3000:]}"
    warnings = [line for line in text.splitlines() if re.search(r"warn", line, re.I)]
    assert not warnings, warnings


def test_make_train_output_is_short_quiet_and_line_per_epoch(tmp_path):
    """`make train` (sr-train with no arguments) redirected to a file, on a tiny budget."""
    out = sr_cli("sr_lightning.apps.train", MAKE_TRAIN_TINY, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    check_quiet(text)
    assert "\r" not in text, "no progress bar in a redirected log"
    epochs = re.findall(r"epoch (\d)/2 step \d+ .*val/psnr [\d.]+", text)
    assert epochs == ["0", "1"], text
    assert len(text.splitlines()) <= 15 and len(text) < 3000, text
    assert "final val/psnr" in text and "run directory:" in text
    run = next((tmp_path / "logs" / "train" / "runs").iterdir())
    assert "epoch 1/2" in (run / "train.log").read_text(), "the epoch lines are in train.log"


@pytest.mark.slow  # two more runs of make train (~30 s on 2 busy cores)
def test_resuming_make_train_says_nothing_false(tmp_path):
    first = sr_cli("sr_lightning.apps.train", [*MAKE_TRAIN_TINY, "hydra.run.dir=run"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    more = ["trainer.max_epochs=3", "data.patches_per_image=4", "hydra.run.dir=run"]
    resumed = sr_cli("sr_lightning.apps.train", more, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    check_quiet(resumed.stdout + resumed.stderr)
    assert "epoch 2/3" in resumed.stdout + resumed.stderr


# -- 13. and 14. a run too short to validate; one precision ---------------------------------


def test_a_run_too_short_to_validate_is_validated_at_the_end(compose_train, tiny_data, caplog):
    caplog.set_level(logging.INFO, logger="sr_lightning.apps.train")
    # 6 images x 4 patches / batch 4 = 6 steps an epoch; stop after 2
    cfg = compose_train(*tiny_overrides(tiny_data), "trainer.max_steps=2")
    metrics = train(cfg)
    assert metrics["val/psnr"] > 0 and "val/psnr_best" in metrics
    assert any("no validation ran during training" in r.getMessage() for r in caplog.records)
    summary = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert summary["metrics"]["val/psnr"] == metrics["val/psnr"] and summary["global_step"] == 2


def test_a_run_stopped_between_validations_reports_its_final_weights(
    compose_train, tiny_data, caplog
):
    """max_steps inside an epoch: the last validation during fit saw older weights."""
    caplog.set_level(logging.INFO, logger="sr_lightning.apps.train")
    # validated at the end of the first epoch; the run stops inside the second, at step 9
    cfg = compose_train(*tiny_overrides(tiny_data), "trainer.max_steps=9", "trainer.max_epochs=-1")
    metrics = train(cfg)
    found = (
        re.search(r"last validation was at step (\d+)", r.getMessage()) for r in caplog.records
    )
    steps = [int(m[1]) for m in found if m]
    assert len(steps) == 1 and steps[0] < 9, steps
    run = Path(cfg.paths.output_dir)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["global_step"] == 9 and summary["metrics"]["val/psnr"] == metrics["val/psnr"]
    # validated afresh: last.ckpt (step 9) in a validation-only run
    last = run / "checkpoints" / "last.ckpt"
    again = compose_train(*tiny_overrides(tiny_data), "train=false", f"ckpt_path={last}")
    assert abs(train(again)["val/psnr"] - metrics["val/psnr"]) < 1e-6


def test_metrics_json_reports_best_and_last_psnr_at_one_precision(compose_train, tiny_data):
    cfg = compose_train(*tiny_overrides(tiny_data), "trainer.max_epochs=1")
    train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]
    # one epoch: the best PSNR is that epoch's PSNR, exactly
    assert metrics["val/psnr_best"] == metrics["val/psnr"]


def test_wandb_is_not_handed_the_deprecated_anonymous_setting(compose_train, monkeypatch):
    """W&B warns about `anonymous` whenever it is passed (Lightning passes None)."""
    import wandb

    from sr_lightning.runtime.builders import build_loggers

    seen = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(wandb, "init", fake_init)
    cfg = compose_train("logger=wandb")
    (wandb_logger,) = [lg for lg in build_loggers(cfg.logger) if type(lg).__name__ == "WandbLogger"]
    with pytest.raises(RuntimeError, match="stop here"):
        _ = wandb_logger.experiment
    assert seen and "anonymous" not in seen
