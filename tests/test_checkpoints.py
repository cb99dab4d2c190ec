"""Safe reading of model files (checkpoints, safetensors, state dicts) and the generators
:func:`resolve_model` builds from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sr_lightning.core.builders import build_module
from sr_lightning.core.model_file import (
    ModelMeta,
    load_net_state,
    read_checkpoint,
    read_model_file,
)
from sr_lightning.core.model_files import check_expected, resolve_model
from sr_lightning.core.registry import UnsafeFileError, resolve
from sr_lightning.modules.espcn import ESPCNModule
from sr_lightning.nets import ESPCN


def espcn_cfg(scale: int = 3, channels: int = 1) -> dict:
    """A plain model config, as ``cfg.model`` resolves to for ``model=espcn``."""
    return {
        "_target_": "sr_lightning.modules.espcn.ESPCNModule",
        "method": "espcn",
        "scale": scale,
        "channels": channels,
        "net": {
            "_target_": "sr_lightning.nets.espcn.ESPCN",
            "scale": scale,
            "channels": channels,
            "widths": [8, 4],
            "kernel_sizes": [5, 3, 3],
            "activation": "tanh",
        },
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
    }


def save_lightning_style(module, path: Path) -> Path:
    """What Lightning writes (state dict, plain hyperparameters) plus the module's metadata."""
    ckpt = {
        "epoch": 0,
        "global_step": 0,
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
    }
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.fixture
def espcn_module() -> ESPCNModule:
    torch.manual_seed(0)
    return build_module({"model": espcn_cfg(), "scale": 3, "channels": 1}).eval()


def reference_sr(module: ESPCNModule, lr: torch.Tensor) -> torch.Tensor:
    """The trained module's own output: ESPCN is a post-upsampling net, so SR = net(LR)."""
    with torch.no_grad():
        return module.net(lr)


class _Payload:
    """Unpickling this creates ``marker`` (a directory): the stand-in for malicious code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_checkpoint_round_trip_rebuilds_the_same_generator(espcn_module, tmp_path):
    path = save_lightning_style(espcn_module, tmp_path / "last.ckpt")
    gen = resolve_model(ckpt_path=path)
    assert isinstance(gen.net, ESPCN) and not gen.net.training
    assert (gen.method, gen.scale, gen.channels, gen.upsampling) == ("espcn", 3, 1, "post")
    meta = read_model_file(path).meta
    assert meta.module == "sr_lightning.modules.espcn.ESPCNModule"
    lr = torch.rand(1, 1, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(gen(lr), reference_sr(espcn_module, lr))


def test_a_checkpoint_naming_pre_regroup_module_paths_still_loads(espcn_module, tmp_path):
    """Checkpoints written before the apps/core/runtime layout name e.g. the schedule as
    ``sr_lightning.schedules.BudgetLR``, which no longer imports: reading renames it to where
    it lives now."""
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("sr_lightning.schedules")
    espcn_module.hparams["scheduler"] = {
        "_target_": "sr_lightning.schedules.BudgetLR",
        "_partial_": True,
        "milestones": [0.7, 0.9],
    }
    path = save_lightning_style(espcn_module, tmp_path / "old.ckpt")
    ckpt = read_checkpoint(path)
    assert ckpt["hyper_parameters"]["scheduler"]["_target_"] == (
        "sr_lightning.core.schedules.BudgetLR"
    )
    lr = torch.rand(1, 1, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(
            resolve_model(ckpt_path=path)(lr), reference_sr(espcn_module, lr)
        )


def test_metadata_falls_back_to_hyperparameters(espcn_module, tmp_path):
    ckpt = {"state_dict": espcn_module.state_dict(), "hyper_parameters": dict(espcn_module.hparams)}
    torch.save(ckpt, tmp_path / "no_entry.ckpt")
    meta = read_model_file(tmp_path / "no_entry.ckpt").meta
    assert (meta.scale, meta.channels, meta.method) == (3, 1, "espcn")


@pytest.mark.parametrize(
    ("expect", "asked"),
    [
        ({"scale": 4}, "scale=4"),
        ({"channels": 3}, "channels=3"),
        ({"method": "vdsr"}, "model=vdsr"),
    ],
)
def test_a_conflicting_request_says_what_the_checkpoint_holds(
    espcn_module, tmp_path, expect, asked
):
    path = save_lightning_style(espcn_module, tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match="is espcn x3 luma") as err:
        resolve_model(ckpt_path=path, expect=expect)
    assert asked in str(err.value) and str(path) in str(err.value)
    # matching and unset requests are fine
    resolve_model(ckpt_path=path, expect={"method": "espcn", "scale": 3, "channels": None})


def test_a_multi_scale_model_asked_for_another_scale_names_every_scale_it_has():
    meta = ModelMeta(method="vdsr", scale=3, channels=1, scales=(4, 2, 3))
    with pytest.raises(ValueError, match=r"is vdsr x2/x3/x4 luma; you asked scale=5"):
        check_expected(meta, {"scale": 5}, "checkpoint v.ckpt")
    assert meta.describe() == "vdsr x3 luma"  # logs name the scale it runs at


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        read_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        read_model_file(tmp_path / "nope.safetensors")


def test_a_malicious_pickle_is_refused_as_unsafe_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker)}, path)
    for load in (read_checkpoint, read_model_file, lambda p: resolve_model(ckpt_path=p)):
        with pytest.raises(UnsafeFileError, match=r"refused as unsafe.*possibly malicious"):
            load(path)
    assert not marker.exists()

    # the payload is real: the unsafe loader (which sr-lightning never uses) runs it
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".ckpt", ".safetensors", ".pt"])
def test_a_file_that_is_no_model_is_one_clear_error(tmp_path, suffix):
    """A text file, garbage bytes or a truncated archive: a ValueError naming the file and
    the formats that are read, whatever torch or safetensors raised inside."""
    for name, data in (("notes", b"these are my notes\n"), ("garbage", b"\x80\x02garbage" * 5)):
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=rf"{name}\{suffix}.*state dict") as err:
            read_model_file(path)
        assert "\n" not in str(err.value)
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(100)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"truncated\.ckpt"):
        read_checkpoint(truncated)


def test_trusted_modules_can_be_extended(monkeypatch, espcn_module, tmp_path):
    ckpt_path = save_lightning_style(espcn_module, tmp_path / "a.ckpt")
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["hyper_parameters"]["net"]["_target_"] = "tests.test_checkpoints.MyESPCN"
    torch.save(ckpt, tmp_path / "b.ckpt")
    monkeypatch.delenv("SR_TRUSTED_MODULES", raising=False)
    with pytest.raises(UnsafeFileError, match="SR_TRUSTED_MODULES"):
        resolve_model(ckpt_path=tmp_path / "b.ckpt")
    monkeypatch.setenv("SR_TRUSTED_MODULES", "tests.test_checkpoints")
    assert type(resolve_model(ckpt_path=tmp_path / "b.ckpt").net) is MyESPCN


class MyESPCN(ESPCN):
    """A user's own net class, outside sr_lightning."""


class NotANet:
    """A class of a trusted user package that is no nn.Module (nor optimizer / scheduler)."""


def test_a_trusted_package_still_names_only_classes_defined_there(monkeypatch):
    """A user prefix does not open the package's globals: ``tests.test_checkpoints.os.system``
    reaches os.system through the module's namespace, and is refused, as are functions and
    classes that are no nets, optimizers or schedulers."""
    monkeypatch.setenv("SR_TRUSTED_MODULES", "tests")
    assert resolve("tests.test_checkpoints.MyESPCN", "f") is MyESPCN
    for name, why in (
        ("tests.test_checkpoints.os.system", "not a class defined there"),
        ("tests.test_checkpoints.torch.nn.Conv2d", "not a class defined there"),
        ("tests.test_checkpoints.espcn_cfg", "not a class defined there"),
        ("tests.test_checkpoints.NotANet", "not an nn.Module, optimizer or LR scheduler"),
    ):
        with pytest.raises(UnsafeFileError, match=why) as err:
            resolve(name, "checkpoint f.ckpt")
        assert name in str(err.value) and "f.ckpt" in str(err.value)


@pytest.mark.parametrize("layout", ["raw", "state_dict", "params", "module_prefix", "net_prefix"])
def test_weights_load_from_the_usual_layouts(espcn_module, tmp_path, layout):
    sd = espcn_module.net.state_dict()
    payload = {
        "raw": sd,
        "state_dict": {"state_dict": sd},
        "params": {"params": sd, "params_ema": sd},
        "module_prefix": {f"module.net.{k}": v for k, v in sd.items()},
        "net_prefix": {"state_dict": espcn_module.state_dict()},  # a whole LightningModule
    }[layout]
    torch.save(payload, tmp_path / "w.pth")
    gen = resolve_model(weights=tmp_path / "w.pth", model_cfg=espcn_cfg(), expect={"scale": 3})
    for k, v in sd.items():
        torch.testing.assert_close(gen.net.state_dict()[k], v)


def test_params_ema_wins_over_params(espcn_module, tmp_path):
    sd = espcn_module.net.state_dict()
    ema = {k: v + 1 for k, v in sd.items()}
    torch.save({"params": sd, "params_ema": ema}, tmp_path / "w.pth")
    state = read_model_file(tmp_path / "w.pth").state
    torch.testing.assert_close(state["body.conv1.bias"], ema["body.conv1.bias"])


def test_safetensors_metadata_is_enough_to_rebuild(espcn_module, tmp_path):
    cfg = espcn_cfg()
    path = tmp_path / "espcn_x3.safetensors"
    metadata = {"method": "espcn", "scale": "3", "channels": "1", "net": json.dumps(cfg["net"])}
    save_file(espcn_module.net.state_dict(), path, metadata=metadata)
    meta = read_model_file(path).meta
    assert meta == ModelMeta(method="espcn", scale=3, channels=1, net=cfg["net"])
    gen = resolve_model(weights=path)
    assert gen.method == "espcn" and gen.scale == 3
    lr = torch.rand(1, 1, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(gen(lr), reference_sr(espcn_module, lr))


def test_mismatched_weights_list_every_problem(tmp_path):
    net = ESPCN(scale=3, widths=(8, 4))
    sd = ESPCN(scale=4, widths=(8, 4)).state_dict()  # conv3: 16 maps, not 9
    sd["extra.weight"] = torch.zeros(1)
    del sd["body.conv1.bias"]
    with pytest.raises(ValueError) as err:
        load_net_state(net, sd, "weights x4.pt")
    message = str(err.value)
    assert "missing keys: body.conv1.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "body.conv3.weight (16, 4, 3, 3) vs (9, 4, 3, 3) expected" in message
    assert "weights x4.pt" in message


def test_long_key_lists_are_truncated(tmp_path):
    net = ESPCN(scale=3, widths=(8, 4))
    sd = {f"junk{i}": torch.zeros(1) for i in range(50)}
    with pytest.raises(ValueError, match=r"\(42 more\)"):
        load_net_state(net, {**net.state_dict(), **sd})


def test_unsupported_weight_file_types_are_named(tmp_path):
    (tmp_path / "w.png").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unsupported model file type '\.png'"):
        read_model_file(tmp_path / "w.png")
