"""Every command of the README's ```bash blocks runs as written, on tiny budgets.

The commands are read from README.md, so a new one is covered with no test edit. Each runs in
one scratch folder (its ``logs/``, ``photos/``, exported files), in README order, with the
budget overrides below appended; placeholders (``<run>``, ``<ckpt>``, ...) become the runs
made by earlier commands. The data root holds the real Set5 / Set14 / T91 / BSD200 and a
tiny generated DIV2K.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.data import write_images
from tests.helpers.slurm_cluster import SlurmUnavailable, local_slurm
from tests.helpers.video import make_clip

REPO = Path(__file__).resolve().parent.parent
MODULES = {
    "sr-train": "sr_lightning.apps.train",
    "sr-eval": "sr_lightning.apps.eval",
    "sr-upscale": "sr_lightning.apps.upscale",
    "sr-export": "sr_lightning.apps.export",
    "sr-report": "sr_lightning.apps.report",
}
# appended to every sr-train command: two steps, one validation image per set
TRAIN_BUDGET = ["trainer.max_steps=2", "trainer.limit_val_batches=1"]


def readme_commands() -> list[str]:
    """The command lines of README.md's bash blocks, comments stripped, in order."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if shlex.split(line, comments=True):
                commands.append(" ".join(line.split("#", 1)[0].split()))
    return commands


def not_runnable_here(command: str) -> str | None:
    """Why a README command cannot run inside this test (None: it runs)."""
    if command in ("make install", "make test"):
        return "sets up / is the test suite itself"
    if "trainer.devices=4" in command and torch.cuda.device_count() < 4:
        return "needs 4 GPUs"
    if "hydra/launcher=slurm" in command and shutil.which("sbatch") is None:
        return "needs a SLURM cluster"
    return None


def test_readme_commands_are_found():
    commands = readme_commands()
    assert "sr-train -m model=srcnn,espcn,vdsr scale=2,3,4 data=t91" in commands
    assert all(c.split()[0] in (*MODULES, "make") for c in commands), commands


def _rrdbnet(num_filters: int, num_blocks: int) -> torch.nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN(in_nc=3, out_nc=3, num_filters=num_filters, num_blocks=num_blocks, scale=4)


def _span() -> torch.nn.Module:
    from spandrel.architectures.SPAN import SPAN

    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4)


# the released files the README names, made here as random-weight instances (no network):
# small ones to evaluate and upscale with, and conf/model/rrdbnet.yaml's own size to fine-tune
RELEASED_MODELS = {
    "RealESRGAN_x4plus.pth": lambda: _rrdbnet(8, 1),
    "4x_SPAN.safetensors": _span,
    "RRDB_PSNR_x4.pth": lambda: _rrdbnet(64, 23),
}


def save_released(net: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)


class Workspace:
    """The scratch folder the README's commands run in, and what they made."""

    def __init__(self, root: Path, data: Path) -> None:
        self.root, self.data = root, data
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
            "SR_DATA_DIR": str(data),
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
        }

    def run(self, words: list[str], env: dict[str, str] | None = None) -> str:
        module = MODULES["sr-train" if words[:2] == ["make", "train"] else words[0]]
        args = words[2:] if words[0] == "make" else words[1:]
        flags = [a for a in args if a.startswith("-")]
        args = [a for a in args if not a.startswith("-")]
        if module == "sr_lightning.apps.train":
            args += TRAIN_BUDGET
            if "hydra/launcher=slurm" in args:
                # the test's one-node cluster has no GPU and two CPUs
                args += ["hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1"]
            if "hparams_search=optuna" in args:
                args.append("hydra.sweeper.n_trials=2")
            if any(a.startswith("experiment=srgan") for a in args):
                # no network here for the VGG19 (content loss) and AlexNet (LPIPS) weights
                args += [
                    "loss.content.pretrained=false",
                    "callbacks.perceptual.lpips.enabled=false",
                ]
        if module == "sr_lightning.apps.upscale" and not torch.cuda.is_available():
            args = ["device=cpu" if a == "device=cuda" else a for a in args]
        done = subprocess.run(
            [sys.executable, "-m", module, *flags, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, (
            f"{shlex.join(words)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
        return done.stdout + done.stderr

    def newest_run(self, method: str) -> Path:
        runs = sorted((self.root / "logs" / "train" / "runs").iterdir())
        for run in reversed(runs):
            if (run / "checkpoints" / "last.ckpt").is_file() and method in (
                run / ".hydra" / "config.yaml"
            ).read_text():
                return run
        raise AssertionError(f"no {method} run yet")

    def substitute(self, command: str) -> list[str]:
        """Placeholders become runs (and files) earlier commands made."""
        if "<srresnet run>" in command:
            command = command.replace("<srresnet run>", self.newest_run("srresnet").name)
        if "<run>" in command:
            command = command.replace("<run>", self.newest_run("espcn").name)
        if "<ckpt>" in command:
            ckpt = self.newest_run("espcn") / "checkpoints" / "last.ckpt"
            command = command.replace("<ckpt>", str(ckpt))
        return shlex.split(command)

    def prepare(self, words: list[str]) -> None:
        """Files a command expects to exist (the README assumes you made them)."""
        args = " ".join(words)
        if "hydra.run.dir=logs/my_run" in args and "ckpt_path=last" in args:
            self.run(["sr-train", "hydra.run.dir=logs/my_run"])
        if "espcn_x3.safetensors" in args and not (self.root / "espcn_x3.safetensors").exists():
            ckpt = self.newest_run("espcn") / "checkpoints" / "last.ckpt"
            self.run(["sr-export", f"ckpt_path={ckpt}", "format=safetensors",
                      "output=espcn_x3.safetensors"])  # fmt: skip
        if (
            "srresnet_x4.safetensors" in args
            and not (self.root / "srresnet_x4.safetensors").exists()
        ):
            ckpt = self.newest_run("srresnet") / "checkpoints" / "last.ckpt"
            self.run(["sr-export", f"ckpt_path={ckpt}", "format=safetensors",
                      "output=srresnet_x4.safetensors"])  # fmt: skip
        for name, make in RELEASED_MODELS.items():
            if f"={name}" in args and not (self.root / name).exists():
                save_released(make(), self.root / name)
        if "input=clip.mp4" in args and not (self.root / "clip.mp4").exists():
            make_clip(self.root / "clip.mp4", frames=4, audio=True)
        for folder in ("photos", "shots"):
            if f"input={folder}" in args and not (self.root / folder).exists():
                write_images(self.root / folder, [(40, 32), (36, 36)])


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    shared = Path(os.environ.get("SR_DATA_DIR", ""))
    if not (shared / "T91").is_dir() or not (shared / "Set5").is_dir():
        pytest.skip("SR_DATA_DIR is not set to a folder holding Set5 and T91 (CI sets it)")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("Set5", "Set14", "T91", "BSD200"):
        if (shared / name).is_dir():
            (data / name).symlink_to(shared / name)
    write_images(data / "DIV2K_train_HR", [(128, 112)] * 4)
    write_images(data / "DIV2K_valid_HR", [(112, 100)] * 2, seed=1)
    root = tmp_path / "work"
    root.mkdir()
    return Workspace(root, data)


@pytest.mark.slow  # every README command: about 30 runs, several minutes on 2 CPU cores
@pytest.mark.timeout(3600)  # up to 900 s per command
def test_every_readme_command_runs_as_written(workspace):
    skipped = {}
    for command in readme_commands():
        reason = not_runnable_here(command)
        if reason:
            skipped[command] = reason
            continue
        words = workspace.substitute(command)
        workspace.prepare(words)
        if "hydra/launcher=slurm" in command:
            # a single-node SLURM on 127.0.0.1 for the submitit command (.ci/run installs it)
            try:
                with local_slurm(workspace.root.parent / "slurm") as cluster:
                    out = workspace.run(words, env={"SLURM_CONF": cluster["SLURM_CONF"]})
            except SlurmUnavailable as err:
                pytest.fail(f"the local SLURM did not start: {err}")
        else:
            out = workspace.run(words)
        if words[:2] == ["sr-train", "-m"] and "hparams_search" not in command:
            sweep = sorted((workspace.root / "logs" / "train" / "multiruns").iterdir())[-1]
            summary = (sweep / "summary.md").read_text()
            assert "0 failed" in summary, summary
        assert "Traceback" not in out, f"{command}\n{out[-3000:]}"
    expected = {"make install", "make test"}
    assert expected <= set(skipped) and len(skipped) <= 4, skipped
