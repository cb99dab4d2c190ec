"""Community models through spandrel: detected, evaluated, upscaled, exported, trained.

Every released file here is a small random-weight instance built with spandrel's own
classes and saved the way model authors ship them (a raw state dict in ``.pth`` or
``.safetensors``). The reference numbers come from a direct forward pass of that same
spandrel module under the protocol, not from our wrapper.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from sr_lightning.checkpoints import UnsafeFileError
from sr_lightning.data.imresize import imresize
from sr_lightning.eval import dihedral_ensemble, evaluate
from sr_lightning.metrics import psnr_y, to_luma_uint8
from sr_lightning.nets.zoo import SpandrelNet
from sr_lightning.zoo import UnknownModelError

spandrel = pytest.importorskip("spandrel")
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.SPAN import SPAN  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402

SCALE = 4
IMAGES = ["bird", "head"]  # two Set5 images keep each evaluation to about a second

# (test id, spandrel's display name, a tiny instance)
ARCHS = {
    "esrgan": ("ESRGAN", lambda: ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)),
    "srvgg_compact": (
        "RealESRGAN Compact",
        lambda: Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4),
    ),
    "swinir": (
        "SwinIR",
        lambda: SwinIR(
            in_chans=3,
            embed_dim=12,
            depths=[2],
            num_heads=[2],
            window_size=4,
            img_size=16,
            mlp_ratio=2.0,
            upscale=4,
            upsampler="pixelshuffledirect",
        ),
    ),
    "span": ("SPAN", lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4)),
}


def released(name: str, seed: int = 0) -> torch.nn.Module:
    """A random-weight instance; weights jittered so no layer is at a trivial init."""
    torch.manual_seed(seed)
    net = ARCHS[name][1]()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.eval()


def save_release(net: torch.nn.Module, path: Path) -> Path:
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def reference_psnr(net: torch.nn.Module, folder: Path, names: list[str], luma: bool = False):
    """Mean Y PSNR of ``net`` run directly: modcrop, float imresize LR, 8-bit SR, crop 4."""
    values = []
    for name in names:
        rgb = np.asarray(Image.open(folder / f"{name}.png").convert("RGB"))
        h, w = (s - s % SCALE for s in rgb.shape[:2])
        hr = torch.from_numpy(rgb[:h, :w].copy()).permute(2, 0, 1)
        if luma:
            hr = to_luma_uint8(hr)
        hr = hr.unsqueeze(0).float() / 255.0
        with torch.no_grad():
            sr = net(imresize(hr, 1.0 / SCALE))
        values.append(float(psnr_y(sr, hr, SCALE)))
    return math.fsum(values) / len(values)


def set_override(data_dir: Path) -> str:
    return (
        f"data.test_sets=[{{name: Set5, dir: {data_dir / 'Set5'}, include: [{','.join(IMAGES)}]}}]"
    )


@pytest.fixture
def compose_eval(compose_train, tmp_path):
    def _compose(*overrides: str):
        cfg = compose_train(*overrides, "trainer=cpu", config_name="eval")
        cfg.paths.output_dir = str(tmp_path / "eval")
        return cfg

    return _compose


# -- evaluation -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_sr_eval_detects_a_released_model_and_matches_its_forward_pass(
    arch, suffix, data_dir, compose_eval, tmp_path, capsys
):
    net = released(arch)
    path = save_release(net, tmp_path / f"{arch}_x4{suffix}")
    results = evaluate(compose_eval(f"weights={path}", set_override(data_dir)))

    assert results["Set5"]["psnr_y"] == pytest.approx(
        reference_psnr(net, data_dir / "Set5", IMAGES), abs=1e-6
    )
    name = ARCHS[arch][0]
    assert f"detected {name} x4 RGB" in capsys.readouterr().out
    info = json.loads((tmp_path / "eval" / "run_info.json").read_text())
    assert info["method"] == name and info["scale"] == 4 and info["channels"] == 3
    assert info["architecture"]["name"] == name
    assert info["params"] == sum(p.numel() for p in net.parameters())
    assert json.loads((tmp_path / "eval" / "results.json").read_text()) == results


def test_tta_and_tiling_work_with_a_released_model(data_dir, compose_eval, tmp_path):
    net = released("esrgan")
    path = save_release(net, tmp_path / "esrgan.pth")
    base = (f"weights={path}", set_override(data_dir))

    tta = evaluate(compose_eval(*base, "tta=true"))["Set5"]["psnr_y"]
    expected = reference_psnr(lambda x: dihedral_ensemble(net, x), data_dir / "Set5", IMAGES)
    assert tta == pytest.approx(expected, abs=1e-6)

    whole = evaluate(compose_eval(*base))["Set5"]["psnr_y"]
    tiled = evaluate(compose_eval(*base, "tile=24"))["Set5"]["psnr_y"]
    assert tiled == pytest.approx(whole, abs=0.005)  # tiles differ by at most one grey level


def test_an_rgb_model_on_a_luma_request_runs_on_rgb_and_reports_y(
    data_dir, compose_eval, tmp_path, caplog
):
    net = released("srvgg_compact")
    path = save_release(net, tmp_path / "compact.pth")
    results = evaluate(compose_eval(f"weights={path}", "channels=1", set_override(data_dir)))
    assert results["Set5"]["psnr_y"] == pytest.approx(
        reference_psnr(net, data_dir / "Set5", IMAGES), abs=1e-6
    )
    assert "run on RGB images; metrics are on Y" in caplog.text


def test_a_one_channel_model_on_an_rgb_set_sees_the_y_channel(data_dir, compose_eval, tmp_path):
    torch.manual_seed(1)
    net = Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=4).eval()
    path = save_release(net, tmp_path / "grey.safetensors")
    results = evaluate(compose_eval(f"weights={path}", set_override(data_dir)))
    assert results["Set5"]["psnr_y"] == pytest.approx(
        reference_psnr(net, data_dir / "Set5", IMAGES, luma=True), abs=1e-6
    )
    info = json.loads((tmp_path / "eval" / "run_info.json").read_text())
    assert info["channels"] == 1 and info["architecture"]["channels"] == 1


def test_a_released_model_of_another_scale_is_refused(data_dir, compose_eval, tmp_path):
    path = save_release(released("esrgan"), tmp_path / "esrgan.pth")
    with pytest.raises(ValueError, match=r"ESRGAN x4 .*you asked scale=2"):
        evaluate(compose_eval(f"weights={path}", "scale=2", set_override(data_dir)))


def test_an_unidentifiable_file_gets_one_error_naming_it_and_what_was_tried(
    data_dir, compose_eval, tmp_path
):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3), "decoder.bias": torch.zeros(3)}, path)
    with pytest.raises(UnknownModelError) as err:
        evaluate(compose_eval(f"weights={path}", set_override(data_dir)))
    message = str(err.value)
    assert str(path) in message and "spandrel" in message
    assert "ESRGAN" in message and "SwinIR" in message  # what was tried
    assert "encoder.weight" in message and "model=<method>" in message


def test_a_restoration_model_is_not_taken_for_super_resolution(data_dir, compose_eval, tmp_path):
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=1)
    path = save_release(net, tmp_path / "denoise.pth")
    with pytest.raises(UnknownModelError, match="scale 1 .*not super-resolution"):
        evaluate(compose_eval(f"weights={path}", set_override(data_dir)))


def test_a_malicious_pickle_is_refused_before_spandrel_sees_it(data_dir, compose_eval, tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "pwned"),))

    state = released("esrgan").state_dict()
    torch.save({**state, "extra": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeFileError, match="possibly malicious"):
        evaluate(compose_eval(f"weights={tmp_path / 'evil.pth'}", set_override(data_dir)))
    assert not (tmp_path / "pwned").exists()
