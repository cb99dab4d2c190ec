"""A model file can never name what gets built (issue: crafted files overwrote files of the
attacker's choosing through sr-eval, sr-upscale and sr-export).

Each crafted file describes its net by a class name that is not registered, with keyword
values that would truncate or replace a "victim" file if the class were ever called. Through
every entry point (sr-eval, sr-upscale, sr-export, ``model.init_from``, ``sr-train
ckpt_path=``) and every format (.ckpt, .pth, .safetensors) the file must be refused in one
line naming the model file and the refused name, and the victim must be untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sr_lightning.core.registry import UnsafeFileError
from sr_lightning.nets import ESPCN
from tests.helpers.compose import compose_app

VICTIM_TEXT = "a file the user made\n"

# name -> keyword values that would damage ``victim`` if the class were built with them
PAYLOADS = {
    # a module-global chain inside our own package to the standard library's ZipFile
    "zipfile": ("sr_lightning.data.download.zipfile.ZipFile", {"mode": "w"}, "file"),
    # a chain through torch.nn's globals to logging.FileHandler
    "filehandler": (
        "torch.nn.attention._registry.logging.FileHandler",
        {"mode": "w"},
        "filename",
    ),
    # a chain through torch.nn.functional's numpy to subprocess.Popen
    "popen": ("torch.nn.functional.np.f2py.subprocess.Popen", {"shell": True}, "args"),
    "os_system": ("os.system", {}, "command"),
    # an nn.Module class reached through a module's globals (registered only where it lives)
    "module_chain": ("sr_lightning.nets.espcn.torch.nn.Conv2d", {"in_channels": 1}, None),
    # a class of ours that is no net
    "not_a_module": ("sr_lightning.core.inference.Upscaler", {}, None),
}


def net_spec(payload: str, victim: Path) -> dict:
    target, kwargs, path_key = PAYLOADS[payload]
    spec = {"_target_": target, **kwargs}
    if path_key in ("args", "command"):
        spec[path_key] = f"echo pwned > {victim}"
    elif path_key:
        spec[path_key] = str(victim)
    return spec


def write_crafted(fmt: str, payload: str, folder: Path) -> tuple[Path, Path]:
    """A model file of format ``fmt`` whose net is ``payload``, and its victim file."""
    victim = folder / f"victim_{payload}.txt"
    victim.write_text(VICTIM_TEXT)
    spec = net_spec(payload, victim)
    weights = ESPCN(scale=3, widths=(8, 4)).state_dict()
    path = folder / f"crafted_{payload}{fmt}"
    if fmt == ".safetensors":
        meta = {"method": "espcn", "scale": "3", "channels": "1", "net": json.dumps(spec)}
        save_file(weights, str(path), metadata=meta)
    else:  # an sr-train checkpoint, under either suffix
        ckpt = {
            "epoch": 0,
            "global_step": 1,
            "state_dict": {f"net.{k}": v for k, v in weights.items()},
            "hyper_parameters": {"net": spec, "scale": 3, "channels": 1, "method": "espcn"},
            "sr_lightning": {"method": "espcn", "scale": 3, "channels": 1},
        }
        torch.save(ckpt, path)
    return path, victim


def via_eval(path: Path, tmp: Path) -> None:
    from sr_lightning.apps.eval import load_eval_model

    key = "ckpt_path" if path.suffix == ".ckpt" else "weights"
    load_eval_model(compose_app("eval", f"{key}={path}"))


def via_upscale(path: Path, tmp: Path) -> None:
    from sr_lightning.apps.upscale import build_upscaler

    key = "ckpt_path" if path.suffix == ".ckpt" else "weights"
    build_upscaler(compose_app("upscale", f"{key}={path}", "device=cpu"))


def via_export(path: Path, tmp: Path) -> None:
    from sr_lightning.apps.export import run

    key = "ckpt_path" if path.suffix == ".ckpt" else "weights"
    run(compose_app("export", f"{key}={path}", f"output={tmp / 'out.safetensors'}"))


def via_init_from(path: Path, tmp: Path) -> None:
    from sr_lightning.core.builders import build_module

    module = build_module(compose_app("train", "model=espcn", "scale=3"))
    module.init_net_from(str(path))


def via_ckpt_path(path: Path, tmp: Path) -> None:
    from sr_lightning.apps.train import checkpoint_position

    checkpoint_position(str(path))


ENTRY_POINTS = {
    "sr-eval": via_eval,
    "sr-upscale": via_upscale,
    "sr-export": via_export,
    "init_from": via_init_from,
    "ckpt_path": via_ckpt_path,
}


@pytest.fixture(autouse=True)
def no_trusted_user_modules(monkeypatch):
    monkeypatch.delenv("SR_TRUSTED_MODULES", raising=False)


# sr-train resumes from Lightning checkpoints (.ckpt, .pth), not from safetensors exports
CASES = [
    (entry, fmt, payload)
    for entry in sorted(ENTRY_POINTS)
    for fmt in (".ckpt", ".pth", ".safetensors")
    for payload in sorted(PAYLOADS)
    if not (entry == "ckpt_path" and fmt == ".safetensors")
]


@pytest.mark.parametrize(("entry", "fmt", "payload"), CASES)
def test_a_crafted_model_file_is_refused_and_changes_nothing(tmp_path, entry, fmt, payload):
    path, victim = write_crafted(fmt, payload, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UnsafeFileError) as err:
        ENTRY_POINTS[entry](path, tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and PAYLOADS[payload][0] in message
    assert victim.read_text() == VICTIM_TEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == before


CLI_CASES = {
    "sr-eval": lambda path, tmp: [f"ckpt_path={path}", f"hydra.run.dir={tmp / 'eval'}"],
    "sr-upscale": lambda path, tmp: [
        f"ckpt_path={path}",
        f"input={tmp / 'in.png'}",
        f"output={tmp / 'up'}",
    ],
    "sr-export": lambda path, tmp: [f"ckpt_path={path}", f"output={tmp / 'out.onnx'}"],
    "sr-train": lambda path, tmp: [
        f"ckpt_path={path}",
        "data=sample",
        f"hydra.run.dir={tmp / 'train'}",
    ],
}


@pytest.mark.parametrize("app", sorted(CLI_CASES))
def test_the_console_scripts_refuse_a_crafted_checkpoint_in_one_line(tmp_path, app):
    """What a user sees: one line naming the file and the refused class, exit status 2."""
    path, victim = write_crafted(".ckpt", "zipfile", tmp_path)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    env = {
        k: v for k, v in os.environ.items() if k not in ("SR_TRUSTED_MODULES", "HYDRA_FULL_ERROR")
    }
    script = Path(sys.executable).with_name(app)
    proc = subprocess.run(
        [str(script), *CLI_CASES[app](path, tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "refusing" in line]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and str(path) in lines[0]
    assert "sr_lightning.data.download.zipfile.ZipFile" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert victim.read_text() == VICTIM_TEXT
