"""Safe loading of checkpoints and weight files, and rebuilding modules from them."""

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
from sr_lightning.core.checkpoints import (
    UnsafeFileError,
    checkpoint_info,
    load_checkpoint,
    load_net_state,
    load_weights,
    module_from_checkpoint,
    module_from_weights,
    offline_hparams,
)
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
    return build_module(espcn_cfg()).eval()


class _Payload:
    """Unpickling this creates ``marker`` (a directory): the stand-in for malicious code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_checkpoint_round_trip_rebuilds_the_same_model(espcn_module, tmp_path):
    path = save_lightning_style(espcn_module, tmp_path / "last.ckpt")
    module = module_from_checkpoint(path)
    assert type(module) is ESPCNModule and not module.training
    assert checkpoint_info(load_checkpoint(path)) == {
        "method": "espcn",
        "module": "sr_lightning.modules.espcn.ESPCNModule",
        "scale": 3,
        "channels": 1,
    }
    lr = torch.rand(1, 1, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(module.sr_for_eval(lr), espcn_module.sr_for_eval(lr))


def test_a_checkpoint_naming_pre_regroup_module_paths_still_loads(espcn_module, tmp_path):
    """Checkpoints written before the apps/core/runtime layout name e.g. the schedule as
    ``sr_lightning.schedules.BudgetLR``, which no longer imports: loading renames it to where
    it lives now, and the module rebuilds with the same outputs."""
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("sr_lightning.schedules")
    espcn_module.hparams["scheduler"] = {
        "_target_": "sr_lightning.schedules.BudgetLR",
        "_partial_": True,
        "milestones": [0.7, 0.9],
    }
    path = save_lightning_style(espcn_module, tmp_path / "old.ckpt")
    module = module_from_checkpoint(path)
    assert module.hparams["scheduler"]["_target_"] == "sr_lightning.core.schedules.BudgetLR"
    lr = torch.rand(1, 1, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(module.sr_for_eval(lr), espcn_module.sr_for_eval(lr))


def test_checkpoint_info_falls_back_to_hyperparameters():
    ckpt = {"state_dict": {}, "hyper_parameters": {"scale": 4, "channels": 3}}
    info = checkpoint_info(ckpt)
    assert (info["scale"], info["channels"], info["module"]) == (4, 3, None)


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
        module_from_checkpoint(path, expect=expect)
    assert asked in str(err.value) and str(path) in str(err.value)
    # matching and unset requests are fine
    module_from_checkpoint(path, expect={"method": "espcn", "scale": 3, "channels": None})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        load_weights(tmp_path / "nope.safetensors")


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker)}, path)
    for load in (load_checkpoint, load_weights, module_from_checkpoint):
        with pytest.raises(UnsafeFileError, match="possibly malicious"):
            load(path)
    assert not marker.exists()

    # the payload is real: the unsafe loader (which sr-lightning never uses) runs it
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert marker.exists()


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x80\x02garbage" * 5)
    with pytest.raises(ValueError, match=r"broken\.pt"):
        load_weights(path)
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(100)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"truncated\.ckpt"):
        load_checkpoint(truncated)


def test_hyperparameters_naming_untrusted_classes_are_refused(espcn_module, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = {
        "state_dict": espcn_module.state_dict(),
        "hyper_parameters": {
            **dict(espcn_module.hparams),
            "net": {"_target_": "os.makedirs", "name": str(marker)},
        },
    }
    espcn_module.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "evil_target.ckpt")
    with pytest.raises(UnsafeFileError, match=r"net\._target_='os\.makedirs'"):
        module_from_checkpoint(tmp_path / "evil_target.ckpt")
    assert not marker.exists()

    # inside the trusted packages, functions are refused too (only classes build nets)
    ckpt["hyper_parameters"]["net"] = {
        "_target_": "sr_lightning.data.download.download_file",
        "url": "http://127.0.0.1:9/x",
    }
    torch.save(ckpt, tmp_path / "evil_function.ckpt")
    with pytest.raises(UnsafeFileError, match="is not a class"):
        module_from_checkpoint(tmp_path / "evil_function.ckpt")

    ckpt["hyper_parameters"] = dict(espcn_module.hparams)
    ckpt["sr_lightning"]["module"] = "subprocess.Popen"
    torch.save(ckpt, tmp_path / "evil_module.ckpt")
    with pytest.raises(UnsafeFileError, match=r"subprocess\.Popen"):
        module_from_checkpoint(tmp_path / "evil_module.ckpt")


def test_trusted_modules_can_be_extended(monkeypatch, espcn_module, tmp_path):
    ckpt_path = save_lightning_style(espcn_module, tmp_path / "a.ckpt")
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["hyper_parameters"]["net"]["_target_"] = "tests.test_checkpoints.MyESPCN"
    torch.save(ckpt, tmp_path / "b.ckpt")
    with pytest.raises(UnsafeFileError, match="SR_TRUSTED_MODULES"):
        module_from_checkpoint(tmp_path / "b.ckpt")
    monkeypatch.setenv("SR_TRUSTED_MODULES", "tests.test_checkpoints")
    assert isinstance(module_from_checkpoint(tmp_path / "b.ckpt").net, MyESPCN)


class MyESPCN(ESPCN):
    """A user's own net class, outside sr_lightning."""


def test_offline_hparams_build_the_vgg_without_pretrained_weights():
    hparams = {
        "loss": {"pixel": None, "content": {"weight": 1.0, "pretrained": True, "layer": "relu5_4"}},
        "init_from": "/somewhere/srresnet.ckpt",
        "scale": 4,
    }
    out = offline_hparams(hparams)
    assert out["loss"]["content"] == {
        "weight": 1.0,
        "pretrained": False,
        "weights_path": None,
        "layer": "relu5_4",
    }
    assert out["init_from"] is None and out["scale"] == 4
    assert hparams["loss"]["content"]["pretrained"] is True  # the input is not modified


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
    module = module_from_weights(espcn_cfg(), tmp_path / "w.pth")
    for k, v in sd.items():
        torch.testing.assert_close(module.net.state_dict()[k], v)


def test_params_ema_wins_over_params(espcn_module, tmp_path):
    sd = espcn_module.net.state_dict()
    ema = {k: v + 1 for k, v in sd.items()}
    torch.save({"params": sd, "params_ema": ema}, tmp_path / "w.pth")
    state, _ = load_weights(tmp_path / "w.pth")
    torch.testing.assert_close(state["body.conv1.bias"], ema["body.conv1.bias"])


def test_safetensors_metadata_is_enough_to_rebuild(espcn_module, tmp_path):
    cfg = espcn_cfg()
    path = tmp_path / "espcn_x3.safetensors"
    metadata = {"method": "espcn", "scale": "3", "channels": "1", "net": json.dumps(cfg["net"])}
    save_file(espcn_module.net.state_dict(), path, metadata=metadata)
    _, meta = load_weights(path)
    assert meta == {"method": "espcn", "scale": 3, "channels": 1, "net": cfg["net"]}
    module = module_from_weights(None, path)
    assert module.method == "espcn" and module.scale == 3
    lr = torch.rand(1, 1, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(module.sr_for_eval(lr), espcn_module.sr_for_eval(lr))


def test_safetensors_metadata_with_an_untrusted_net_is_refused(espcn_module, tmp_path):
    path = tmp_path / "evil.safetensors"
    net = {"_target_": "os.makedirs", "name": str(tmp_path / "pwned")}
    save_file(espcn_module.net.state_dict(), path, metadata={"scale": "3", "net": json.dumps(net)})
    with pytest.raises(UnsafeFileError):
        module_from_weights(None, path)
    assert not (tmp_path / "pwned").exists()


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
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unsupported file type '\.onnx'"):
        load_weights(tmp_path / "w.onnx")
