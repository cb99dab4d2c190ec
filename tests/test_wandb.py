"""W&B logging, read back from offline runs' own files (no server, never logged in).

wandb 0.31 ships no Python reader for its ``.wandb`` transaction log, so ``read_records``
decodes it here: LevelDB-style log blocks (32 KiB, 7-byte chunk headers) after a 7-byte W&B
header, each record a ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import csv
import json
import struct
import time
from pathlib import Path

import pytest
import torch

from sr_lightning.apps.train import train
from tests.helpers.config import tiny_overrides

BLOCK = 32 * 1024
CHUNK_HEADER = 7  # crc32c (4), length (2), chunk type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

pytestmark = pytest.mark.slow


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    records, parts, pos = [], [], 7
    while pos + CHUNK_HEADER <= len(data):
        if BLOCK - pos % BLOCK < CHUNK_HEADER:  # block trailer too small for a header
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        pos += CHUNK_HEADER
        if kind == 0:  # zero padding up to the end of the block
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        parts.append(data[pos : pos + length])
        pos += length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def as_dict(items) -> dict:
    """History / config items -> a dict; media are spread over nested keys
    (``["val_images/val/img_000", "width"]``) and come back as nested dicts."""
    out: dict = {}
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = json.loads(item.value_json)
    return out


def history(records: list) -> list[dict]:
    """Each logged row as {key: decoded value}."""
    return [as_dict(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]


def run_record(records: list):
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    return run


def offline_run(run_dir: Path) -> tuple[str, Path, list]:
    """The run id kept in the run dir, its (newest) offline run folder and its records."""
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    folders = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert folders, f"no offline run {run_id} under {run_dir / 'wandb'}"
    return run_id, folders[-1], finished_records(folders[-1] / f"run-{run_id}.wandb")


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """The records once the run's exit record is on disk: wandb.finish() returns before the
    W&B service has flushed an offline run's log."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.2)


def wandb_overrides(*extra: str) -> list[str]:
    return ["scale=2", "logger=wandb", "logger.wandb.offline=true", *extra]


def artifacts(records: list) -> list:
    return [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]


def test_offline_run_holds_config_metrics_image_panels_and_per_image_table(
    tiny_data, compose_train, tmp_path, monkeypatch
):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")  # (Lightning refuses offline=true + log_model)
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        "scale=2",
        "logger=wandb",
        "logger.wandb.log_model=true",
        "trainer.max_epochs=2",
        "callbacks.image_panels.every_n_epochs=1",
    )
    metrics = train(cfg)
    assert wandb.run is None  # the job's run was finished
    run_id, folder, records = offline_run(tmp_path / "run")

    run = run_record(records)
    assert run.run_id == run_id
    assert run.project == "sr-lightning" and run.run_group == "espcn_x2_folder"
    assert list(run.tags) == ["espcn", "x2", "folder"]
    config = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind in ("run", "config"):
            config.update(as_dict((r.run.config if kind == "run" else r.config).update))
    assert config["model"]["method"] == "espcn" and config["scale"] == 2
    assert config["data"]["batch_size"] == 4 and config["trainer"]["max_epochs"] == 2

    rows = history(records)
    psnr = [row["val/psnr"] for row in rows if "val/psnr" in row]
    assert len(psnr) == 2 and psnr[-1] == pytest.approx(metrics["val/psnr"], abs=1e-6)
    assert max(row.get("val/psnr_best", -1) for row in rows) == pytest.approx(
        metrics["val/psnr_best"], abs=1e-5
    )
    assert any("train/loss_step" in row for row in rows)

    # panels: bicubic | SR | HR of both validation images, at both epochs, as PNG media
    panels = [row for row in rows if "val_images/val/img_000" in row]
    assert len(panels) == 2
    media = panels[-1]["val_images/val/img_000"]
    assert media["_type"] == "image-file" and (media["width"], media["height"]) == (152, 36)
    assert (folder / "files" / media["path"]).is_file()

    # per-image table: every validation image once, its mean is the logged PSNR
    table_ref = [row["val/per_image"] for row in rows if "val/per_image" in row][-1]
    table = json.loads((folder / "files" / table_ref["path"]).read_text())
    assert table["columns"][:3] == ["set", "image", "psnr"]
    assert [row[1] for row in table["data"]] == ["img_000", "img_001"]
    mean = sum(row[2] for row in table["data"]) / len(table["data"])
    assert mean == pytest.approx(metrics["val/psnr"], abs=1e-6)

    # log_model=true: the checkpoints as model artifacts, to upload with `wandb sync`
    models = [a for a in artifacts(records) if a.type == "model"]
    assert models and all([m.path for m in a.manifest.contents] == ["model.ckpt"] for a in models)


def test_each_job_of_a_process_gets_its_own_run(tiny_data, compose_train, tmp_path, monkeypatch):
    """A multirun runs its jobs in one process: without wandb.finish the 2nd job would be
    logged into the 1st job's run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    seen = []
    for job in ("a", "b"):
        cfg = compose_train(*tiny_overrides(tiny_data), *wandb_overrides("trainer.max_epochs=1"))
        cfg.paths.output_dir = str(tmp_path / job)
        train(cfg)
        run_id, _, records = offline_run(tmp_path / job)
        assert run_record(records).run_id == run_id
        assert sum("val/psnr" in row for row in history(records)) == 1
        seen.append(run_id)
    assert seen[0] != seen[1]


def test_resumed_job_continues_its_checkpoint_step_and_its_wandb_run(
    tiny_data, compose_train, tmp_path, monkeypatch
):
    """What a requeued job does: same run dir, no ckpt_path given (resume=auto)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    train(compose_train(*tiny_overrides(tiny_data), *wandb_overrides("trainer.max_epochs=1")))
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    first_id, _, _ = offline_run(run_dir)
    assert saved > 0
    time.sleep(1.1)  # W&B names offline run folders by the second: keep the two apart

    cfg = compose_train(*tiny_overrides(tiny_data), *wandb_overrides("trainer.max_epochs=2"))
    train(cfg)
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["resumed_at_step"] == saved
    assert Path(summary["resumed_from"]).parent == run_dir / "checkpoints"
    assert summary["global_step"] == 2 * saved  # one more epoch, not two
    run_id, _, records = offline_run(run_dir)
    assert run_id == first_id == summary["wandb_id"]
    rows = history(records)
    assert [row["epoch"] for row in rows if "val/psnr" in row] == [1]  # epoch 0 not redone
    assert min(row["trainer/global_step"] for row in rows if "trainer/global_step" in row) >= saved
    # csv/metrics.csv keeps the metrics logged before the resume, ahead of the new ones
    epochs = [row["epoch"] for row in csv.DictReader((run_dir / "csv" / "metrics.csv").open())
              if row.get("val/psnr")]  # fmt: skip
    assert epochs == ["0", "1"]

    cfg = compose_train(
        *tiny_overrides(tiny_data), *wandb_overrides("trainer.max_epochs=2", "++resume=never")
    )
    train(cfg)
    assert json.loads((run_dir / "metrics.json").read_text())["resumed_from"] is None


def _summary(records: list) -> dict:
    out: dict = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            out.update(as_dict(r.summary.update))
    return out


def test_sr_eval_results_go_to_the_checkpoints_training_run_else_an_eval_run(
    tiny_data, compose_train, tmp_path, monkeypatch
):
    from sr_lightning.apps.eval import evaluate

    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    train(compose_train(*tiny_overrides(tiny_data), *wandb_overrides("trainer.max_epochs=1")))
    train_id, _, _ = offline_run(run_dir)
    time.sleep(1.1)  # W&B names offline run folders by the second

    data = [f"paths.data_dir={tiny_data}", "data.test_sets=[val]", "trainer=cpu"]
    wandb = ["logger=wandb", "logger.wandb.offline=true"]
    ckpt = f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
    for name, overrides in (("ckpt", [ckpt]), ("bicubic", ["model=bicubic", "scale=2"])):
        cfg = compose_train(*data, *wandb, *overrides, config_name="eval")
        cfg.paths.output_dir = str(tmp_path / f"eval_{name}")
        results = evaluate(cfg)["val"]
        folders = sorted((tmp_path / f"eval_{name}" / "wandb").glob("offline-run-*"))
        assert len(folders) == 1
        run_id = folders[0].name.rsplit("-", 1)[-1]
        records = finished_records(folders[0] / f"run-{run_id}.wandb")
        run = run_record(records)
        if name == "ckpt":  # into the training run: W&B compares runs by benchmark numbers
            assert run_id == train_id == run.run_id
        else:  # no training run: an eval run of its own
            assert run_id != train_id and run.job_type == "eval"
        summary = _summary(records)
        assert summary["eval/val/psnr_y"] == pytest.approx(results["psnr_y"], abs=1e-12)
        assert summary["eval/val/images"] == 2
        (row,) = [r for r in history(records) if "eval/results" in r]
        table = json.loads((folders[0] / "files" / row["eval/results"]["path"]).read_text())
        assert table["columns"] == ["set", "images", "psnr_y", "ssim_y"]
        assert table["data"] == [["val", 2, results["psnr_y"], results["ssim_y"]]]
        per_image = json.loads((folders[0] / "files" / row["eval/per_image"]["path"]).read_text())
        assert [r[1] for r in per_image["data"]] == ["img_000", "img_001"]
