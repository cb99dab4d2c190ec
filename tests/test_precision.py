"""trainer.precision=auto: bf16-mixed exactly where the hardware computes in bfloat16."""

from __future__ import annotations

import csv
import logging
import math

import pytest
import torch
from omegaconf import open_dict

from sr_lightning.apps.train import train
from sr_lightning.common.errors import ConfigError
from sr_lightning.runtime.precision import resolve_precision
from sr_lightning.runtime.schema import check_config
from tests.helpers.config import tiny_overrides


def fake_cpu(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected", "why"),
    [
        (True, False, "bf16-mixed", "this CPU has AVX512-BF16"),
        (False, True, "bf16-mixed", "this CPU has AMX"),
        (True, True, "bf16-mixed", "this CPU has AMX"),
        (False, False, "32-true", "would be emulated"),
    ],
)
@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_auto_is_bf16_mixed_only_on_a_cpu_with_bfloat16_instructions(
    monkeypatch, avx512_bf16, amx, expected, why, accelerator
):
    fake_cpu(monkeypatch, avx512_bf16, amx)
    got = resolve_precision({"precision": "auto", "accelerator": accelerator})
    assert got[0] == expected and why in got[1]


def test_auto_on_a_gpu_follows_its_bfloat16_support(monkeypatch):
    fake_cpu(monkeypatch, avx512_bf16=True, amx=False)  # the host CPU does not decide
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda n=native, **_: n)
        for accelerator in ("gpu", "cuda", "auto"):
            cfg = {"precision": "auto", "accelerator": accelerator}
            assert resolve_precision(cfg)[0] == expected


@pytest.mark.parametrize("given", ["32-true", "bf16-mixed", "16-mixed", 64])
def test_an_explicit_precision_is_kept_whatever_the_cpu(monkeypatch, given):
    fake_cpu(monkeypatch, avx512_bf16=True, amx=True)
    assert resolve_precision({"precision": given, "accelerator": "cpu"}) == (given, "")


def test_the_schema_takes_auto_and_still_refuses_a_bare_bf16(tiny_data, compose_train):
    check_config(compose_train(*tiny_overrides(tiny_data), "trainer.precision=auto"), "train")
    with pytest.raises(ConfigError, match=r"trainer\.precision"):
        check_config(compose_train(*tiny_overrides(tiny_data), "trainer.precision=bf16"), "train")


def epoch_losses(run_dir) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]


def test_sr_train_with_auto_trains_in_bf16_on_a_bf16_cpu(
    tiny_data, compose_train, tmp_path, monkeypatch, caplog
):
    """auto on a CPU with AVX512-BF16 gives the very run trainer.precision=bf16-mixed gives
    (not the float32 one), and its loss is finite and falls."""
    fake_cpu(monkeypatch, avx512_bf16=True, amx=False)
    losses = {}
    for precision in ("auto", "bf16-mixed", "32-true"):
        cfg = compose_train(
            *tiny_overrides(tiny_data), "seed=7", "scale=3", "trainer.max_epochs=6",
            f"trainer.precision={precision}", "trainer.check_val_every_n_epoch=6",
        )  # fmt: skip
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / precision)
        with caplog.at_level(logging.INFO, logger="sr_lightning.apps.train"):
            train(cfg)
        losses[precision] = epoch_losses(tmp_path / precision)
    assert "trainer.precision=auto -> bf16-mixed (this CPU has AVX512-BF16)" in caplog.text
    assert losses["auto"] == losses["bf16-mixed"]
    assert losses["auto"] != losses["32-true"]
    auto = losses["auto"]
    assert len(auto) == 6 and all(math.isfinite(x) for x in auto)
    assert auto[-1] < 0.8 * auto[0]
