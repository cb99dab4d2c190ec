"""Multiruns: one dir per job under one sweep dir, the summary table, Optuna, submitit."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from sr_lightning.core.derived import hr_patch
from sr_lightning.runtime.atomic import write_atomic
from sr_lightning.runtime.sweep import SweepSummary, refresh
from tests.helpers.config import tiny_overrides
from tests.helpers.sweeps import job_dirs, only_sweep_dir, read_summary, run_cli

REPO = Path(__file__).resolve().parent.parent


def job_overrides(job: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in OmegaConf.load(job / ".hydra" / "overrides.yaml"))


def best_psnr(job: Path) -> float:
    return json.loads((job / "metrics.json").read_text())["metrics"]["val/psnr_best"]


# -- the summary, without training ----------------------------------------------------------


def fake_job(sweep: Path, num: int, overrides: list[str], best: float | None) -> tuple:
    """A finished job as Hydra hands it to callbacks (config with its hydra node, JobReturn)."""
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
    if best is None:
        result = JobReturn(status=JobStatus.FAILED, _return_value=ValueError("no patches"))
    else:
        run = {"metrics": {"val/psnr_best": best, "val/psnr": best - 0.5}, "epochs": 3}
        (job_dir / "metrics.json").write_text(json.dumps(run))
        result = JobReturn(status=JobStatus.COMPLETED, _return_value=best)
    return config, result


def test_summary_is_refreshed_as_jobs_end_best_first_with_failures_last(tmp_path):
    sweep = tmp_path / "sweep"
    summary = SweepSummary()
    jobs = [
        fake_job(sweep, 0, ["model=espcn", "scale=2", "data=t91"], 30.5),
        fake_job(sweep, 1, ["model=espcn", "scale=3", "data=t91"], None),
        fake_job(sweep, 2, ["model=vdsr", "scale=2", "data=t91"], 31.25),
    ]
    summary.on_job_end(*jobs[0])
    assert [r["job"] for r in read_summary(sweep)] == ["0"]  # visible before the sweep ends
    summary.on_job_end(*jobs[1])
    summary.on_job_end(*jobs[2])
    rows = read_summary(sweep)
    assert [r["job"] for r in rows] == ["2", "0", "1"]
    assert [r["val/psnr_best"] for r in rows] == ["31.25", "30.5", ""]
    assert rows[2]["status"] == "failed" and rows[2]["error"] == "ValueError: no patches"
    assert rows[0]["model"] == "vdsr" and rows[0]["scale"] == "2" and rows[0]["epochs"] == "3"
    md = (sweep / "summary.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| job"))
    assert header == "| job | model | scale | val/psnr_best | val/psnr | val/ssim | status | dir |"
    assert md[-1].startswith("| 1 | espcn | 3 |  |  |  | failed: ValueError: no patches |")
    assert not list(sweep.glob(".*.tmp"))


def test_lpips_ranks_lowest_first_and_optuna_minimises_it(tmp_path):
    from sr_lightning.core.config import metric_direction

    sweep = tmp_path / "sweep"
    summary = SweepSummary(["val/lpips_best", "val/lpips_best", "val/psnr"])
    assert summary.metrics == ["val/lpips_best", "val/psnr"]  # `${optimized_metric}` repeated
    for num, lpips in enumerate([0.21, 0.12, 0.30]):
        config, result = fake_job(sweep, num, [f"model.optimizer.lr={num}"], 30.0)
        run = {"metrics": {"val/lpips_best": lpips, "val/psnr": 30.0 - num}}
        (sweep / str(num) / "metrics.json").write_text(json.dumps(run))
        summary.on_job_end(config, result)
    assert [r["val/lpips_best"] for r in read_summary(sweep)] == ["0.12", "0.21", "0.3"]
    assert [metric_direction(m) for m in ("val/lpips_best", "val/dists", "val/psnr_best")] == [
        "minimize",
        "minimize",
        "maximize",
    ]
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sr_lightning.core.config import CONF_DIR

    for overrides, metric, direction in (
        (["experiment=srgan_x4"], "val/lpips_best", "minimize"),
        (["experiment=espcn_x3"], "val/psnr_best", "maximize"),
    ):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "train", overrides=["hparams_search=optuna", *overrides], return_hydra_config=True
            )
        assert cfg.optimized_metric == metric
        assert cfg.hydra.sweeper.direction == direction
        assert cfg.hydra.callbacks.sweep_summary.metrics[0] == metric
    GlobalHydra.instance().clear()


def test_single_runs_and_extra_ranks_write_no_summary(tmp_path, monkeypatch):
    config, result = fake_job(tmp_path / "sweep", 0, ["scale=2"], 30.0)
    monkeypatch.setenv("SLURM_PROCID", "1")  # rank 1 of a multi-task SLURM job
    SweepSummary().on_job_end(config, result)
    monkeypatch.delenv("SLURM_PROCID")
    config.hydra.mode = RunMode.RUN
    SweepSummary().on_job_end(config, result)
    assert not (tmp_path / "sweep" / "summary.csv").exists()


def _finish_job(sweep: str, num: int) -> None:
    rows = Path(sweep) / ".summary"
    row = {"job": num, "status": "completed", "overrides": {"seed": str(num)}}
    write_atomic(rows / f"{num}.json", json.dumps({**row, "val/psnr_best": 20.0 + num}))
    refresh(Path(sweep), ["val/psnr_best"])


def test_jobs_ending_at_once_in_other_processes_lose_no_row(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / ".summary").mkdir(parents=True)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_finish_job, args=(str(sweep), n)) for n in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert [int(r["job"]) for r in read_summary(sweep)] == list(range(11, -1, -1))
    assert not list(sweep.glob(".*.tmp"))


def test_slurm_preset_asks_for_the_trainers_nodes_and_devices(tmp_path, monkeypatch):
    """The sbatch script submitit would submit for `hydra/launcher=slurm trainer=ddp`."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import open_dict

    from sr_lightning.core.config import CONF_DIR

    fake_bin = tmp_path / "bin"  # submitit insists on finding srun
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = str(tmp_path)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", HydraConfig.instance().cfg)  # restored
    HydraConfig.instance().set_config(cfg)
    params = instantiate(cfg.hydra.launcher).params
    # what hydra-submitit-launcher hands to submitit (its launch() does the same renaming)
    base_keys = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(
        folder=params["submitit_folder"], cluster="slurm", slurm_max_num_timeout=10
    )
    executor.update_parameters(
        **{
            key if key in base_keys else f"slurm_{key}": value
            for key, value in params.items()
            if key not in ("submitit_folder", "max_num_timeout")
        }
    )
    script = executor._executor._make_submission_file_text("python -m sr_lightning.apps.train", "0")
    for line in (
        "--nodes=2",
        "--ntasks-per-node=4",  # one task (DDP rank) per GPU
        "--gpus-per-node=4",
        "--partition=gpu",
        "--signal=USR2@120",  # the requeue signal, 2 minutes before the limit
        "--time=1440",
    ):
        assert f"#SBATCH {line}\n" in script, line
    assert params["max_num_timeout"] == 10


# -- real sweeps -------------------------------------------------------------------------------


@pytest.mark.slow
def test_basic_2x2_multirun_gets_one_dir_per_job_and_a_summary(tiny_data, tmp_path):
    args = [a for a in tiny_overrides(tiny_data) if not a.startswith("data.batch_size")]
    code, out = run_cli(
        ["-m", *args, "trainer.max_epochs=1", "scale=2,3", "data.batch_size=4,8"], tmp_path
    )
    assert code == 0, out[-3000:]
    sweep = only_sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    combos = {(job_overrides(j)["scale"], job_overrides(j)["data.batch_size"]) for j in jobs}
    assert combos == {("2", "4"), ("2", "8"), ("3", "4"), ("3", "8")}
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file() and (job / "train.log").is_file()

    rows = read_summary(sweep)
    assert sorted(r["job"] for r in rows) == ["0", "1", "2", "3"]
    for row in rows:
        job = sweep / row["dir"]
        assert float(row["val/psnr_best"]) == pytest.approx(best_psnr(job))
        assert (row["scale"], row["data.batch_size"]) == (
            job_overrides(job)["scale"],
            job_overrides(job)["data.batch_size"],
        )
    values = [float(r["val/psnr_best"]) for r in rows]
    assert values == sorted(values, reverse=True)
    header = next(
        line for line in (sweep / "summary.md").read_text().splitlines() if "| job" in line
    )
    assert "| scale | data.batch_size |" in header and "data.train_sets" not in header


def optuna_args(tiny_data: Path, db: Path, *extra: str) -> list[str]:
    args = [a for a in tiny_overrides(tiny_data) if not a.startswith("data.batch_size")]
    return [
        *args,
        "-m",  # the preset sets hydra.mode=MULTIRUN; sweep syntax on the command line needs -m
        "hparams_search=optuna",
        "scale=2",
        "trainer.max_epochs=1",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage=sqlite:///{db}",
        "hydra.sweeper.study_name=tiny",
        *extra,
    ]


@pytest.mark.slow
def test_optuna_two_trials_maximise_best_psnr_in_a_sqlite_study(tiny_data, tmp_path):
    import optuna

    db = tmp_path / "optuna.db"
    code, out = run_cli(
        optuna_args(
            tiny_data,
            db,
            # the preset's space, narrowed to what the tiny images allow (sweep overrides on
            # the command line replace the preset's hydra.sweeper.params entries)
            "data.batch_size=choice(4,8)",
            "search.lr_patch_size=range(8,16,step=4)",
        ),
        tmp_path,
    )
    assert code == 0, out[-3000:]
    assert "alembic" not in out, "Optuna's storage migrations are not the user's business"
    sweep = only_sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert len(jobs) == 2

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial, job in zip(trials, jobs, strict=True):
        assert trial.value == pytest.approx(best_psnr(job))  # the objective is val/psnr_best
        assert set(trial.params) == {
            "model.optimizer.lr",
            "data.batch_size",
            "search.lr_patch_size",
        }
        assert 1e-4 <= trial.params["model.optimizer.lr"] <= 3e-2
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert config.data.batch_size == trial.params["data.batch_size"]
        # the searched LR patch reaches the model, and the HR patch is it times the scale
        assert config.model.patch_lr == trial.params["search.lr_patch_size"]
        assert config.model.patch_hr is None
        assert hr_patch(config.scale, patch_lr=config.model.patch_lr) == 2 * config.model.patch_lr
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.best_value == pytest.approx(max(best_psnr(j) for j in jobs))
    assert len(read_summary(sweep)) == 2


@pytest.mark.slow
def test_optuna_records_a_crashing_trial_as_failed_and_goes_on(tiny_data, tmp_path):
    import optuna

    db = tmp_path / "optuna.db"
    code, out = run_cli(
        optuna_args(
            tiny_data,
            db,
            # batch 1000 > 24 patches per epoch raises in the data module; lr and patch fixed,
            # TPE (seed 42, optuna 2.10) draws 1000 then 4
            "data.batch_size=choice(4,1000)",
            "model.optimizer.lr=0.001",
            "search.lr_patch_size=8",
        ),
        tmp_path,
    )
    assert code == 0, out[-3000:]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    states = {t.params["data.batch_size"]: t.state for t in study.trials}
    assert states == {4: optuna.trial.TrialState.COMPLETE, 1000: optuna.trial.TrialState.FAIL}
    sweep = only_sweep_dir(tmp_path)
    (failed,) = [j for j in job_dirs(sweep) if job_overrides(j)["data.batch_size"] == "1000"]
    log = (failed / "train.log").read_text()
    assert "run failed" in log and "data.batch_size=1000" in log  # the job's own log says why
    assert "Traceback" not in log and "Traceback" in (failed / "error.txt").read_text()
    rows = {r["data.batch_size"]: r for r in read_summary(sweep)}
    assert rows["1000"]["status"] == "failed" and "ValueError" in rows["1000"]["error"]
    assert rows["4"]["status"] == "completed"


@pytest.mark.slow
def test_submitit_local_job_runs_in_its_own_process_inside_the_sweep_dir(tiny_data, tmp_path):
    """As on SLURM, the job runs in another process (submitit): its dir must still be under
    the launcher's sweep dir (the launcher's timestamp and pid), and it reaches the summary."""
    args = [*tiny_overrides(tiny_data), "trainer.max_epochs=1", "scale=2,3"]
    code, out = run_cli(["-m", "hydra/launcher=local", *args], tmp_path)
    assert code == 0, out[-3000:]
    sweep = only_sweep_dir(tmp_path)
    assert str(sweep) == out.split("sweep output dir : ")[1].splitlines()[0].strip()
    jobs = job_dirs(sweep)
    assert [job_overrides(j)["scale"] for j in jobs] == ["2", "3"]
    assert len(list((sweep / ".submitit").rglob("*_log.out"))) == 2  # ran through submitit
    assert {r["scale"] for r in read_summary(sweep)} == {"2", "3"}
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["global_step"] > 0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a sweep, killed, then run again (600 s each at most)
def test_a_killed_sweep_rerun_in_place_ends_as_if_never_killed(tiny_data, tmp_path):
    """SIGKILL of the multirun's process group in the middle of its second job; rerunning the
    same command (same sweep dir) reads job 0 back, resumes job 1 from its last.ckpt and runs
    jobs 2 and 3: the summary equals an uninterrupted sweep's."""
    # 8 steps an epoch, last.ckpt every 4 steps; job 1 is killed at step 6
    args = [*tiny_overrides(tiny_data), "data.patches_per_image=8", "trainer.max_epochs=1",
            "callbacks.periodic_last.every_n_train_steps=4", "callbacks.image_panels=null",
            "seed=1,2,3,4", "+callbacks.kill._target_=tests.helpers.kill_switch.KillSweepAtStep",
            "+callbacks.kill.step=6", "+callbacks.kill.job=1"]  # fmt: skip
    ref, sweep = tmp_path / "uninterrupted", tmp_path / "killed"
    code, out = run_cli(["-m", f"hydra.sweep.dir={ref}", *args], tmp_path)
    assert code == 0, out[-3000:]
    os.environ["SR_TEST_KILL_SWEEP"] = "1"
    try:
        code, out = run_cli(["-m", f"hydra.sweep.dir={sweep}", *args], tmp_path)
    finally:
        del os.environ["SR_TEST_KILL_SWEEP"]
    assert code == -signal.SIGKILL, out[-3000:]
    assert [job.name for job in job_dirs(sweep)] == ["0", "1"]
    assert not (sweep / "1" / "metrics.json").exists()
    first = sweep / "0" / "checkpoints" / "last.ckpt"
    untouched = {p: p.stat().st_mtime_ns for p in (first, sweep / "0" / "metrics.json")}

    code, out = run_cli(["-m", f"hydra.sweep.dir={sweep}", *args], tmp_path)
    assert code == 0, out[-3000:]
    assert "run already complete" in out
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # job 0 not retrained
    resumed = json.loads((sweep / "1" / "metrics.json").read_text())
    assert resumed["resumed_from"] == str(sweep / "1" / "checkpoints" / "last.ckpt")
    full = json.loads((ref / "1" / "metrics.json").read_text())
    assert resumed["resumed_at_step"] == 4 and resumed["global_step"] == full["global_step"] > 6
    # LearningRateMonitor logs at an epoch's start, which a run resumed mid-epoch skips
    assert resumed["metrics"] == {k: v for k, v in full["metrics"].items() if "lr-" not in k}
    for job in ("0", "2", "3"):
        assert json.loads((sweep / job / "metrics.json").read_text())["resumed_from"] is None
    rows, expected = read_summary(sweep), read_summary(ref)
    assert [r["job"] for r in rows] == [r["job"] for r in expected] and len(rows) == 4
    assert rows == expected  # metrics, overrides, status, epochs, steps, dirs


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a sweep, killed, then run again (600 s each at most)
def test_a_killed_optuna_search_rerun_in_place_finishes_its_trials(tiny_data, tmp_path):
    """The preset's study lives in the sweep dir; a search killed in its second trial and
    rerun with the same sweep dir runs only the missing trials, the interrupted one again."""
    import optuna
    from optuna.trial import TrialState

    sweep = tmp_path / "search"
    args = [a for a in optuna_args(tiny_data, tmp_path / "unused.db") if "storage" not in a]
    args = [*[a.replace("n_trials=2", "n_trials=3") for a in args], f"hydra.sweep.dir={sweep}",
            "data.patches_per_image=8", "callbacks.periodic_last.every_n_train_steps=4",
            "data.batch_size=choice(4,8)", "search.lr_patch_size=range(8,16,step=4)",
            "+callbacks.kill._target_=tests.helpers.kill_switch.KillSweepAtStep",
            "+callbacks.kill.step=3", "+callbacks.kill.job=1"]  # fmt: skip
    os.environ["SR_TEST_KILL_SWEEP"] = "1"
    try:
        code, out = run_cli(args, tmp_path)
    finally:
        del os.environ["SR_TEST_KILL_SWEEP"]
    assert code == -signal.SIGKILL, out[-3000:]
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    killed = optuna.load_study(study_name="tiny", storage=storage).trials
    assert [t.state for t in killed] == [TrialState.COMPLETE, TrialState.RUNNING]
    first = (sweep / "0" / "metrics.json").stat().st_mtime_ns

    code, out = run_cli(args, tmp_path)
    assert code == 0, out[-3000:]
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, *[TrialState.COMPLETE] * 2]
    assert trials[2].params == killed[1].params  # the interrupted trial, tried again
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == first  # not rerun
    assert [j.name for j in job_dirs(sweep)] == ["0", "1", "2", "3"]  # job dir N = trial N
    assert {r["job"] for r in read_summary(sweep) if r["status"] == "completed"} >= {"0", "2", "3"}
