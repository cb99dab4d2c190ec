"""What a new user hit following README and docs (issue #29's walkthrough)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sr_lightning.apps.train import train
from tests.helpers.config import tiny_overrides


def _best_checkpoint_score(run: Path) -> tuple[Path, float]:
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    ckpt = torch.load(best, weights_only=True)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    return best, float(state["best_model_score"])


def test_after_a_max_steps_stop_the_best_value_is_the_best_checkpoints(compose_train, tiny_data):
    # validated at steps 6 and 12 (epoch ends); stops inside epoch 2 at step 17, where the
    # final weights are validated once more, and score higher than any before
    cfg = compose_train(*tiny_overrides(tiny_data), "scale=2", "trainer.max_steps=17",
                        "trainer.max_epochs=-1", "model.optimizer.lr=1e-3")  # fmt: skip
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    best, score = _best_checkpoint_score(run)
    assert metrics["val/psnr_best"] == pytest.approx(score, abs=1e-5)  # float32 in the ckpt
    assert f"psnr{metrics['val/psnr_best']:.3f}" in best.name
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["metrics"]["val/psnr_best"] == metrics["val/psnr_best"]
    assert summary["best_checkpoint"] == str(best)
    # the final weights were validated too: val/psnr is theirs, not the best's
    assert metrics["val/psnr"] > metrics["val/psnr_best"]  # it would have raised the best
    assert re.search(r"epoch00[01]-", best.name)


def test_sr_train_model_bicubic_is_refused_in_one_line(compose_train, tmp_path):
    from sr_lightning.runtime.errors import ConfigError

    cfg = compose_train("model=bicubic")
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert str(info.value) == "bicubic has no weights to train; use sr-eval model=bicubic"
    assert not (tmp_path / "run").exists()


def _cli(app: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"sr_lightning.apps.{app}", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def test_sr_export_onto_an_existing_file_is_a_user_error_exit_2(tmp_path):
    from sr_lightning.nets.espcn import ESPCN

    torch.save(ESPCN(scale=3, channels=1).state_dict(), tmp_path / "espcn_x3.pth")
    target = tmp_path / "espcn_x3.safetensors"
    target.write_bytes(b"mine")
    proc = _cli("export", "model=espcn", "scale=3", "channels=1", "format=safetensors",
                f"weights={tmp_path / 'espcn_x3.pth'}", f"output={target}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"sr-export: {target} already exists; pass overwrite=true to replace it"
    ]
    assert target.read_bytes() == b"mine"


@pytest.mark.parametrize(
    "budget",
    [
        # 6 batches an epoch < log_every_n_steps (10), and an epoch without validation
        ("trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2"),
        # stopped before the first validation: ModelCheckpoint finds no val/psnr
        ("trainer.max_steps=2",),
    ],
)
def test_no_lightning_warning_a_user_cannot_act_on(compose_train, tiny_data, budget):
    import warnings

    cfg = compose_train(*tiny_overrides(tiny_data), "scale=2", *budget)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "logging interval" in m or "monitored key" in m], messages


def test_sr_train_model_bicubic_from_the_command_line(tmp_path):
    proc = _cli("train", "model=bicubic", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "sr-train: error: bicubic has no weights to train; use sr-eval model=bicubic"
    assert len(lines) <= 2 and "Interpolation" not in proc.stderr


def test_a_failed_backbone_download_leaves_no_lock_file(tmp_path, monkeypatch):
    from sr_lightning.common import download

    def cut(url, part, size, **kwargs):
        part.write_bytes(b"the first half")
        raise download._Interrupted("connection reset by peer")

    monkeypatch.setattr(download, "_fetch_into", cut)
    dest = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(download.DownloadError, match="interrupted"):
        download.download_file("https://example.invalid/vgg19.pth", dest, sha256=None,
                               allow_unverified=True, retries=0, progress=False)  # fmt: skip
    # the partial file stays (the next run resumes it); the lock file does not
    assert sorted(p.name for p in dest.parent.iterdir()) == ["vgg19-dcbb9e9d.pth.part"]


def test_a_lock_file_removed_by_its_holder_still_serialises_the_waiters(tmp_path):
    """What download_file relies on when it removes its lock file while holding it."""
    from filelock import FileLock

    lock = tmp_path / "w.pth.lock"
    waiter = (
        "import sys, time\nfrom filelock import FileLock\n"
        f"with FileLock({str(lock)!r}):\n"
        "    print('in', time.time(), flush=True)\n    time.sleep(2)\n"
    )
    held = FileLock(str(lock))
    held.acquire()
    proc = subprocess.Popen([sys.executable, "-c", waiter], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the waiter is blocked on the held lock
    lock.unlink()
    held.release()
    time.sleep(0.3)  # the waiter holds it now (on a new file)
    newcomer = FileLock(str(lock))
    newcomer.acquire()
    entered = time.time()
    newcomer.release()
    out, _ = proc.communicate(timeout=30)
    assert entered > float(out.split()[1]) + 1.5  # the newcomer waited for the waiter
