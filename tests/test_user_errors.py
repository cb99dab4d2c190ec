"""Every failure a user can cause is one short block naming the key or file and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import OverrideParseException

from sr_lightning.runtime.errors import quoting_hint, user_message
from tests.helpers.config import tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def _cli(app: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "SR_DEBUG")}
    return subprocess.run(
        [sys.executable, "-m", f"sr_lightning.apps.{app}", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**base, "OMP_NUM_THREADS": "1", **(env or {})},
    )  # fmt: skip


def _nan_run(tiny_data: Path, run: Path, **env: str) -> subprocess.CompletedProcess:
    return _cli("train", *tiny_overrides(tiny_data), "scale=2", "model.optimizer.lr=1e6",
                "trainer.max_steps=4", f"hydra.run.dir={run}", env=env)  # fmt: skip


def test_a_nan_loss_is_one_short_block_naming_the_key(tiny_data, tmp_path):
    proc = _nan_run(tiny_data, tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) <= 25, "\n".join(lines)
    assert "Traceback" not in proc.stderr
    error = proc.stderr[proc.stderr.index("sr-train: error: non-finite loss") :]
    assert "model.optimizer.lr" in error and "HYDRA_FULL_ERROR=1" in error


@pytest.mark.slow
def test_a_nan_loss_keeps_its_traceback_with_hydra_full_error(tiny_data, tmp_path):
    proc = _nan_run(tiny_data, tmp_path / "run", HYDRA_FULL_ERROR="1")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "FloatingPointError: non-finite loss" in proc.stderr


@pytest.mark.parametrize(
    "override,quoted",
    [
        ("input=/tmp/фото.png", """'input="/tmp/фото.png"'"""),
        ("input=/tmp/a (1).png", """'input="/tmp/a (1).png"'"""),
        ('''output=/tmp/say "hi"''', """"output='/tmp/say "hi"'\""""),
    ],
)
def test_an_unreadable_override_suggests_quoting_the_value(override, quoted):
    err = OverrideParseException(override, "LexerNoViableAltException: " + override)
    hint = quoting_hint(err)
    assert hint.startswith(f"quote the value of {override.split('=')[0]}: {quoted} ")
    assert user_message(err).splitlines()[-1] == hint


def test_a_non_ascii_path_gets_the_quoting_hint_from_the_console_script(tmp_path):
    proc = _cli("upscale", "input=/tmp/café/x.png", f"output={tmp_path / 'out'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("sr-upscale: error: LexerNoViableAltException")
    assert """quote the value of input: 'input="/tmp/café/x.png"'""" in proc.stderr
    assert len(lines) <= 6 and not (tmp_path / "out").exists()


def test_sr_eval_tile_abc_names_the_key(tiny_data, tmp_path):
    proc = _cli("eval", "model=bicubic", "scale=2", "tile=abc", f"paths.data_dir={tiny_data}",
                "data.test_sets=[val]", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert proc.returncode == 2
    assert "tile=abc" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 4


def test_sr_upscale_scale_abc_names_the_key(tmp_path):
    import torch

    from sr_lightning.nets.espcn import ESPCN

    weights = tmp_path / "espcn_x3.pth"
    torch.save(ESPCN(scale=3, channels=1).state_dict(), weights)
    images = tmp_path / "in"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (12, 10)).save(images / "a.png")
    proc = _cli("upscale", "model=espcn", "scale=abc", "channels=1", f"weights={weights}",
                f"input={images}", f"output={tmp_path / 'out'}")  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 3 and "scale=abc" in lines[0], proc.stderr


def test_memory_fraction_outside_0_1_is_refused_naming_the_key(tmp_path):
    import torch
    from PIL import Image

    from sr_lightning.nets.espcn import ESPCN

    torch.save(ESPCN(scale=3, channels=1).state_dict(), tmp_path / "espcn_x3.pth")
    (tmp_path / "in").mkdir()
    Image.new("RGB", (12, 10)).save(tmp_path / "in" / "a.png")
    proc = _cli("upscale", "model=espcn", "scale=3", "channels=1", "memory_fraction=5",
                f"weights={tmp_path / 'espcn_x3.pth'}", f"input={tmp_path / 'in'}",
                f"output={tmp_path / 'out'}")  # fmt: skip
    assert proc.returncode == 2
    assert "memory_fraction=5" in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / "out").exists()


def test_memory_fraction_is_checked_by_the_upscaler_too():
    from sr_lightning.core.inference import Upscaler
    from sr_lightning.nets.espcn import ESPCN

    with pytest.raises(ValueError, match=r"memory_fraction=5: .* in \(0, 1\]"):
        Upscaler(ESPCN(scale=2), memory_fraction=5)


def _gif(path: Path, frames: int) -> None:
    from PIL import Image

    images = [Image.new("RGB", (16, 12), (40 * i, 80, 0)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)


def test_a_gif_in_a_training_folder_is_named_once(tmp_path, caplog):
    from sr_lightning.data.images import list_images
    from tests.helpers.data import write_images

    folder = tmp_path / "train"
    write_images(folder, [(32, 32), (32, 32)])
    _gif(folder / "clip.gif", 3)
    (folder / "notes.txt").write_text("not an image")
    with caplog.at_level("WARNING", logger="sr_lightning.data.images"):
        assert [p.name for p in list_images(folder)] == ["img_000.png", "img_001.png"]
        list_images(folder)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "skipped 1 file(s)" in warnings[0] and "clip.gif" in warnings[0]
    assert "(.gif)" in warnings[0] and "notes.txt" not in warnings[0]


def test_an_animated_gif_warns_that_only_its_first_frame_is_used(tmp_path, caplog):
    from sr_lightning.data.images import read_image

    _gif(tmp_path / "anim.gif", 3)
    _gif(tmp_path / "still.gif", 1)
    with caplog.at_level("WARNING", logger="sr_lightning.data.images"):
        assert read_image(tmp_path / "anim.gif").shape == (12, 16, 3)
        read_image(tmp_path / "still.gif")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'anim.gif'} has 3 frames (an animation or pages); only the first is used"
    ]
