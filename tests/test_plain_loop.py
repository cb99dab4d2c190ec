"""scripts/plain_loop.py, the baseline of the end-to-end and time-to-quality benchmarks."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from sr_lightning.common.color import to_luma_uint8
from sr_lightning.core.metrics import psnr_y
from sr_lightning.data.images import load_image
from sr_lightning.data.imresize import imresize
from sr_lightning.nets.espcn import ESPCN
from tests.helpers.data import write_images

REPO = Path(__file__).resolve().parents[1]


def test_plain_loop_trains_its_steps_and_scores_set5_like_sr_eval(tmp_path) -> None:
    write_images(tmp_path / "T91", [(64, 64), (72, 60), (60, 81)])
    (set5,) = write_images(tmp_path / "Set5", [(63, 48)], seed=1)
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plain_loop.py"), "--steps", "6",
         "--data-dir", str(tmp_path), "--eval", "Set5", "--save", str(tmp_path / "net.pt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result["steps"] == 6 and result["model"] == "espcn"
    assert result["activation"] == "relu" and result["last_layer_lr_mult"] == 1.0  # the preset's
    assert 0 < result["data_s"] < result["train_s"]
    # its Set5 number is the protocol's: luma, modcrop, unrounded bicubic LR, border 3
    net = ESPCN(3, 1, activation="relu")
    net.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    hr = to_luma_uint8(load_image(set5))[:, :48, :63].float()[None] / 255
    with torch.no_grad():
        expected = float(psnr_y(net(imresize(hr, 1 / 3)), hr, crop=3))
    assert abs(result["set5"] - expected) < 1e-6


def test_plain_loop_in_bf16_runs_the_net_under_bfloat16_autocast(tmp_path) -> None:
    """--precision bf16 changes the training (the products are rounded to bfloat16), keeps
    float32 weights, and still trains: the weights move and Set5 stays finite."""
    write_images(tmp_path / "T91", [(64, 64), (72, 60), (60, 81)])
    write_images(tmp_path / "Set5", [(63, 48)], seed=1)
    nets = {}
    for precision in ("fp32", "bf16"):
        out = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "plain_loop.py"), "--steps", "6",
             "--data-dir", str(tmp_path), "--eval", "Set5", "--precision", precision,
             "--save", str(tmp_path / f"{precision}.pt")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(out.stdout)
        assert result["precision"] == precision and result["steps"] == 6
        assert math.isfinite(result["set5"])
        nets[precision] = torch.load(tmp_path / f"{precision}.pt", weights_only=True)
    torch.manual_seed(0)  # the script's seed, before it builds the net
    start = ESPCN(3, 1, activation="relu").state_dict()
    for name, value in nets["bf16"].items():
        assert value.dtype == torch.float32, name  # master weights stay float32
        assert not torch.equal(value, start[name]), name  # trained
        assert not torch.equal(value, nets["fp32"][name]), name  # with bf16-rounded products


def test_plain_loop_at_scale_4_trains_an_x4_net_and_scores_at_x4(tmp_path) -> None:
    write_images(tmp_path / "T91", [(80, 80), (96, 84)])
    (set5,) = write_images(tmp_path / "Set5", [(66, 50)], seed=1)
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plain_loop.py"), "--steps", "3", "--scale", "4",
         "--data-dir", str(tmp_path), "--eval", "Set5", "--save", str(tmp_path / "net.pt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result["scale"] == 4 and result["steps"] == 3
    net = ESPCN(4, 1, activation="relu")  # an x3 state dict would not load: other shapes
    net.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
    hr = to_luma_uint8(load_image(set5))[:, :48, :64].float()[None] / 255  # modcrop to 4
    with torch.no_grad():
        expected = float(psnr_y(net(imresize(hr, 1 / 4)), hr, crop=4))
    assert abs(result["set5"] - expected) < 1e-6
