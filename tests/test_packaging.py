"""The wheel carries its configs and runs outside the repository (issue 15, item 1).

Building the wheel and installing it into a new venv takes a while: ``slow``. The venv sees
the development venv's dependencies through a ``.pth`` path line (torch is not reinstalled);
a path line does not run the ``.pth`` files in that folder, so the development venv's
editable finder stays inactive, which the test checks: ``sr_lightning`` must import from the
new venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers.data import write_images

REPO = Path(__file__).resolve().parent.parent
# what a source distribution holds: the package, its configs and the build files
SOURCES = ("sr_lightning", "hydra_plugins", "conf", "pyproject.toml", "setup.py", "README.md")

PIP = (sys.executable, "-m", "pip")
OFFLINE = ("-q", "--no-deps", "--no-index")

pytestmark = pytest.mark.slow


def build_wheel(out: Path) -> Path:
    src = out / "src"
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, src / name, **({} if copy is shutil.copy2 else {"ignore": _junk}))
    wheels = out / "wheels"
    subprocess.run(
        [*PIP, "wheel", *OFFLINE, "--no-build-isolation", "-w", str(wheels), str(src)],
        check=True,
        env=clean_env(),
    )
    (wheel,) = wheels.glob("sr_lightning-*.whl")
    return wheel


def _junk(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith(".egg-info")]


def clean_env() -> dict[str, str]:
    """The environment without this checkout on the path (PYTHONPATH) or another venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def make_venv(where: Path, wheel: Path) -> Path:
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    subprocess.run(
        [*PIP, "--python", str(python), "install", *OFFLINE, str(wheel)],
        check=True,
        env=clean_env(),
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return where / "bin"


def test_the_wheel_ships_every_config(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".yaml")}
    expected = {
        "sr_lightning/conf/" + p.relative_to(REPO / "conf").as_posix()
        for p in (REPO / "conf").rglob("*.yaml")
    }
    assert expected and shipped == expected
    # sr-report's page copies its script and style from the installed package
    assets = {n for n in zipfile.ZipFile(wheel).namelist() if "/report_assets/" in n}
    assert assets == {f"sr_lightning/apps/report_assets/viewer.{e}" for e in ("js", "css")}


def test_the_installed_wheel_trains_evaluates_exports_upscales_and_reports(tmp_path: Path) -> None:
    bin_dir = make_venv(tmp_path / "venv", build_wheel(tmp_path))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = clean_env()
    env.update(WANDB_MODE="offline", SR_DATA_DIR=str(tmp_path / "data"))
    write_images(tmp_path / "data" / "Tiny", [(48, 36), (40, 40)], seed=3)

    def run(*cmd: str) -> str:
        done = subprocess.run(
            [str(bin_dir / cmd[0]), *cmd[1:]], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    where = run(
        "python", "-c", "import sr_lightning.core.config as c; print(c.__file__, c.CONFIG_PATH)"
    )
    module_file, config_path = where.split()
    assert Path(module_file).is_relative_to(tmp_path / "venv"), module_file
    assert config_path == "pkg://sr_lightning.conf"

    run(
        "sr-train",
        "trainer=cpu",
        "trainer.max_steps=2",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",
        "data.batch_size=2",
        "data.patches_per_image=1",
        "hydra.run.dir=train_run",
    )
    summary = json.loads((work / "train_run" / "metrics.json").read_text())
    assert summary["global_step"] == 2
    ckpt = work / "train_run" / "checkpoints" / "last.ckpt"
    run(
        "sr-eval",
        f"ckpt_path={ckpt}",
        "data.test_sets=[Tiny]",
        "save_images=true",
        "hydra.run.dir=eval_run",
    )
    assert "Tiny" in json.loads((work / "eval_run" / "results.json").read_text())
    run("sr-export", f"ckpt_path={ckpt}", "format=safetensors", "output=g.safetensors")
    run("sr-upscale", f"input={tmp_path / 'data' / 'Tiny'}", "output=up", "weights=g.safetensors")
    assert len(list((work / "up").glob("*.png"))) == 2
    run("sr-report", "eval_run", "-o", "report", "--crops", "Tiny/img_000")
    assert "ESPCN" in (work / "report" / "report.md").read_text()
    for name in ("report.html", "assets/viewer.js", "crops_Tiny_img_000_x3.pdf"):
        assert (work / "report" / name).is_file(), name
