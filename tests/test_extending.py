"""docs/extending.md's worked example, run as written: a user package with its own net and
configs trains, evaluates, exports, upscales and reports through Hydra's search path.

The page's ``# file:`` code blocks are written into a fresh folder, and each command of its
``sh`` block runs there through the console script's own entry point (in-process, so the
example costs seconds; ``tests/test_packaging.py`` runs the installed scripts themselves).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

from sr_lightning.apps import eval as eval_app
from sr_lightning.apps import export, report, train, upscale

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"
APPS = {
    "sr-train": train.main,
    "sr-eval": eval_app.main,
    "sr-export": export.main,
    "sr-upscale": upscale.main,
    "sr-report": report.main,
}
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*",
    "ignore:.*LeafSpec.*",
    "ignore:.*smaller than the logging interval.*",
)


def doc_blocks() -> tuple[dict[str, str], list[str]]:
    """``{path: text}`` of the ``# file: path`` blocks, and the lines of the ``sh`` blocks
    after the "Then, from" sentence (the install block above it is not run)."""
    text = DOC.read_text()
    files, commands = {}, []
    example = text.index("Then, from")
    for match in FENCE.finditer(text):
        lang, body = match.groups()
        first, _, rest = body.partition("\n")
        if first.startswith("# file: "):
            files[first.removeprefix("# file: ").strip()] = rest
        elif lang == "sh" and match.start() > example:
            commands += [ln for ln in body.splitlines() if ln.strip() and not ln.startswith("#")]
    return files, commands


def run_line(line: str, monkeypatch) -> None:
    words = shlex.split(os.path.expandvars(line))
    if words[0] == "export":
        key, _, value = words[1].partition("=")
        monkeypatch.setenv(key, value)
        if key == "PYTHONPATH":
            monkeypatch.syspath_prepend(value)
        return
    monkeypatch.setattr(sys, "argv", words)
    result = APPS[words[0]]()
    assert result in (None, 0) or isinstance(result, float), f"{line} -> {result}"


@pytest.mark.slow  # about 30 s: a short training on the bundled photos, then four apps
def test_the_extending_guide_runs_as_written(tmp_path, monkeypatch, data_dir) -> None:
    files, commands = doc_blocks()
    assert {
        "mynets/tiny.py",
        "mynets/losses.py",
        "conf/model/mynet.yaml",
        "conf/loss/edge_l1.yaml",
        "conf/experiment/mynet_x2.yaml",
    } <= set(files)
    assert [c.split()[0] for c in commands if c.startswith("sr-")] == list(APPS)
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    monkeypatch.setenv("SR_DATA_DIR", str(data_dir))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("SR_TRUSTED_MODULES", raising=False)
    for line in commands:
        run_line(line, monkeypatch)

    runs = tmp_path / "runs"
    ckpt = torch.load(runs / "mynet_x2" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["sr_lightning"]["method"] == "mynet"
    assert ckpt["hyper_parameters"]["net"]["_target_"] == "mynets.tiny.TinySubPixel"
    assert ckpt["hyper_parameters"]["loss"] == {
        "_target_": "mynets.losses.EdgeL1",
        "edge_weight": 0.5,
    }
    results = json.loads((runs / "eval_mynet" / "results.json").read_text())
    info = json.loads((runs / "eval_mynet" / "run_info.json").read_text())
    assert results["Set5"]["images"] == 5 and info["method"] == "mynet"
    assert (runs / "mynet_x2" / "checkpoints" / "last.onnx").is_file()
    assert [p.name for p in (tmp_path / "upscaled").iterdir()] == ["baby_x2.png"]
    table = (runs / "report" / "report.md").read_text()
    assert "TinySubPixel" in table, table


def test_checkpoints_of_user_classes_are_refused_until_their_package_is_trusted(
    tmp_path, monkeypatch, data_dir
) -> None:
    """Without SR_TRUSTED_MODULES the checkpoint's classes are not imported: one clear error."""
    from sr_lightning.core.model_files import resolve_model
    from sr_lightning.core.registry import UnsafeFileError

    files, _ = doc_blocks()
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SR_TRUSTED_MODULES", raising=False)
    state = {"net.body.0.weight": torch.zeros(16, 1, 5, 5)}
    hparams = {"net": {"_target_": "mynets.tiny.TinySubPixel", "scale": 2}, "optimizer": None}
    meta = {"method": "mynet", "module": "sr_lightning.modules.base.SRModule", "scale": 2}
    path = tmp_path / "user.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": hparams, "sr_lightning": meta}, path)
    with pytest.raises(UnsafeFileError, match=r"mynets\.tiny\.TinySubPixel.*SR_TRUSTED_MODULES"):
        resolve_model(ckpt_path=path)

    # a net of ours trained with the user's loss: the loss's class is named, so refused too
    espcn = {"_target_": "sr_lightning.nets.espcn.ESPCN", "scale": 2, "channels": 1}
    loss = {"_target_": "mynets.losses.EdgeL1", "edge_weight": 0.5}
    hparams = {"net": espcn, "optimizer": None, "loss": loss}
    torch.save({"state_dict": {}, "hyper_parameters": hparams, "sr_lightning": meta}, path)
    with pytest.raises(UnsafeFileError, match=r"mynets\.losses\.EdgeL1.*SR_TRUSTED_MODULES"):
        resolve_model(ckpt_path=path)
