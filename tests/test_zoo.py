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
import spandrel
import torch
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.SPAN import SPAN
from spandrel.architectures.SwinIR import SwinIR

from sr_lightning.apps.eval import dihedral_ensemble, evaluate
from sr_lightning.common.color import to_luma_uint8
from sr_lightning.core.metrics import psnr_y
from sr_lightning.core.registry import UnsafeFileError
from sr_lightning.core.zoo import UnknownModelError
from sr_lightning.data.imresize import imresize
from sr_lightning.nets.zoo import SpandrelNet

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


def reference_psnr(net, folder: Path, names: list[str], luma: bool = False, scale: int = SCALE):
    """Mean Y PSNR of ``net`` run directly: modcrop, float imresize LR, 8-bit SR, crop scale."""
    values = []
    for name in names:
        rgb = np.asarray(Image.open(folder / f"{name}.png").convert("RGB"))
        h, w = (s - s % scale for s in rgb.shape[:2])
        hr = torch.from_numpy(rgb[:h, :w].copy()).permute(2, 0, 1)
        if luma:
            hr = to_luma_uint8(hr)
        hr = hr.unsqueeze(0).float() / 255.0
        with torch.no_grad():
            sr = net(imresize(hr, 1.0 / scale))
        values.append(float(psnr_y(sr, hr, scale)))
    return math.fsum(values) / len(values)


def set_override(data_dir: Path) -> str:
    return (
        f"data.test_sets=[{{name: Set5, dir: {data_dir / 'Set5'}, include: [{','.join(IMAGES)}]}}]"
    )


@pytest.fixture
def compose_eval(compose_train, tmp_path):
    """conf/eval.yaml with overrides; each evaluation in a run dir of its own (sr-eval keeps
    an earlier results.json)."""
    runs = iter(range(1_000))

    def _compose(*overrides: str):
        cfg = compose_train(*overrides, "trainer=cpu", config_name="eval")
        cfg.paths.output_dir = str(tmp_path / f"eval{next(runs)}")
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
    info = json.loads((tmp_path / "eval0" / "run_info.json").read_text())
    assert info["method"] == name and info["scale"] == 4 and info["channels"] == 3
    assert info["architecture"]["name"] == name
    assert info["params"] == sum(p.numel() for p in net.parameters())
    assert json.loads((tmp_path / "eval0" / "results.json").read_text()) == results


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
    info = json.loads((tmp_path / "eval0" / "run_info.json").read_text())
    assert info["channels"] == 1 and info["architecture"]["channels"] == 1


def test_a_model_with_size_requirements_is_padded_like_spandrel_pads_it(
    data_dir, compose_eval, tmp_path
):
    """Real-ESRGAN x2plus style: pixel-unshuffle in front, so inputs must be multiples of 4."""
    torch.manual_seed(2)
    net = ESRGAN(in_nc=12, out_nc=3, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2)
    path = save_release(net, tmp_path / "x2plus.pth")
    odd = f"data.test_sets=[{{name: Set5, dir: {data_dir / 'Set5'}, include: [bird]}}]"
    results = evaluate(compose_eval(f"weights={path}", odd))  # bird: 288 / 2 = 144 = 4 * 36
    desc = spandrel.ModelLoader().load_from_state_dict(net.state_dict()).eval()
    assert desc.scale == 2 and desc.size_requirements.multiple_of == 4
    expected = reference_psnr(desc, data_dir / "Set5", ["bird"], scale=2)
    assert results["Set5"]["psnr_y"] == pytest.approx(expected, abs=1e-6)
    woman = f"data.test_sets=[{{name: Set5, dir: {data_dir / 'Set5'}, include: [woman]}}]"
    results = evaluate(compose_eval(f"weights={path}", woman))  # 228 x 344 -> 114 x 172: padded
    expected = reference_psnr(desc, data_dir / "Set5", ["woman"], scale=2)
    assert results["Set5"]["psnr_y"] == pytest.approx(expected, abs=1e-6)


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
    with pytest.raises(UnknownModelError, match=r"scale 1 .*not super-resolution"):
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


# -- upscaling and export ------------------------------------------------------------------------


def compose_app(name: str, *overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sr_lightning.core.config import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose(name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("arch", ["esrgan", "srvgg_compact", "span"])
def test_sr_upscale_with_a_released_model_is_the_same_tiled_and_untiled(arch, tmp_path):
    from sr_lightning.apps import upscale

    net = released(arch)
    path = save_release(net, tmp_path / f"{arch}.safetensors")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (30, 44, 3), dtype=np.uint8))
    image.resize((44, 30)).save(tmp_path / "in.png")

    outputs = {}
    for tile in (0, 12):
        out = tmp_path / f"tile{tile}"
        args = [f"input={tmp_path / 'in.png'}", f"output={out}", f"weights={path}"]
        (written,) = upscale.run(compose_app("upscale", "progress=false", f"tile={tile}", *args))
        outputs[tile] = np.asarray(Image.open(written)).astype(int)
    with torch.no_grad():
        lr = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
        direct = (net(lr).clamp(0, 1) * 255 + 0.5).floor()[0].permute(1, 2, 0).numpy()
    assert outputs[0].shape == (120, 176, 3)
    assert np.abs(outputs[0] - direct).max() <= 1  # float rounding at a level boundary
    assert np.abs(outputs[12] - outputs[0]).max() <= 1
    assert (outputs[12] != outputs[0]).mean() < 0.01


def test_sr_export_writes_a_file_that_sr_eval_and_spandrel_both_read(
    data_dir, compose_eval, tmp_path
):
    from sr_lightning.apps.export import run as run_export

    net = released("esrgan")
    pth = save_release(net, tmp_path / "esrgan.pth")
    written = run_export(compose_app("export", f"weights={pth}", "format=safetensors"))
    assert written == tmp_path / "esrgan.safetensors"

    # the export is self-describing (ours) and keeps the architecture's own keys (spandrel's)
    desc = spandrel.ModelLoader().load_from_file(written)
    assert desc.architecture.id == "ESRGAN" and desc.scale == 4
    for key, value in net.state_dict().items():
        assert torch.equal(desc.model.state_dict()[key], value)
    results = evaluate(compose_eval(f"weights={written}", set_override(data_dir)))
    assert results["Set5"]["psnr_y"] == pytest.approx(
        reference_psnr(net, data_dir / "Set5", IMAGES), abs=1e-6
    )


def test_sr_export_onnx_of_a_released_model_is_verified(tmp_path, capsys):
    from sr_lightning.apps.export import run as run_export

    pth = save_release(released("srvgg_compact"), tmp_path / "compact.pth")
    written = run_export(compose_app("export", f"weights={pth}", "format=onnx"))
    assert written.is_file() and "max abs diff" in capsys.readouterr().out


# -- building and training spandrel architectures -------------------------------------------------


def rrdbnet_parameters(nf: int, gc: int, blocks: int, channels: int, scale: int) -> int:
    """ESRGAN's RRDBNet, counted from its layers: 3x3 convs with bias throughout."""

    def conv(cin: int, cout: int) -> int:
        return 9 * cin * cout + cout

    dense_block = sum(conv(nf + i * gc, gc) for i in range(4)) + conv(nf + 4 * gc, nf)
    upsampling = int(math.log2(scale)) * conv(nf, nf)
    # first conv, blocks of 3 dense blocks, trunk conv, upsampling convs, HR conv, last conv
    return (
        conv(channels, nf)
        + blocks * 3 * dense_block
        + conv(nf, nf)
        + upsampling
        + conv(nf, nf)
        + conv(nf, channels)
    )


def test_rrdbnet_config_has_the_esrgan_papers_parameter_count(compose_train):
    from sr_lightning.core.builders import build_module

    module = build_module(compose_train("model=rrdbnet", "scale=4", "channels=3"))
    count = sum(p.numel() for p in module.net.parameters())
    assert count == rrdbnet_parameters(nf=64, gc=32, blocks=23, channels=3, scale=4)
    assert round(count / 1e6, 1) == 16.7  # "16.7M" (Wang et al., ESRGAN, ECCVW'18)
    assert (module.net.scale, module.net.in_channels) == (4, 3)


@pytest.mark.parametrize(
    "model,arch", [("swinir_light", "SwinIR"), ("span", "SPAN"), ("srvgg_compact", "Compact")]
)
def test_every_spandrel_model_config_builds_its_architecture(compose_train, model, arch):
    from sr_lightning.core.builders import build_module

    module = build_module(compose_train(f"model={model}", "scale=4", "channels=3"))
    assert isinstance(module.net, SpandrelNet) and module.net.arch == arch
    assert module.net.scale == 4 and module.net.upsampling == "post"
    with torch.no_grad():
        assert module(torch.rand(1, 3, 9, 11)).shape == (1, 3, 36, 44)


def test_a_config_whose_net_disagrees_with_the_run_is_one_clear_error(compose_train):
    from sr_lightning.core.builders import build_module

    with pytest.raises(ValueError, match=r"x4 with 3 channels .* channels=1"):
        build_module(compose_train("model=span", "scale=4", "channels=1"))


def test_a_spandrel_net_trains_two_batches_under_sr_train(tiny_data, compose_train, tmp_path):
    from sr_lightning.apps.train import train
    from tests.helpers.config import tiny_overrides

    init = save_release(
        Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2), tmp_path / "c.pth"
    )
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        "model=srvgg_compact",
        "scale=2",
        "channels=3",
        "model.net.hyperparameters.num_feat=8",
        "model.net.hyperparameters.num_conv=2",
        f"model.init_from={init}",
        "model.patch_lr=16",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
    )
    metrics = train(cfg)
    assert metrics["val/psnr_best"] > 10  # validated under the papers' protocol
    # and evaluated from its checkpoint like our own nets, to the same number
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = compose_train(
        f"ckpt_path={last}",
        f"paths.data_dir={tiny_data}",
        "data.test_sets=[val]",
        "trainer=cpu",
        config_name="eval",
    )
    cfg.paths.output_dir = str(tmp_path / "eval")
    assert evaluate(cfg)["val"]["psnr_y"] == pytest.approx(metrics["val/psnr_best"], abs=1e-4)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    # the yaml's name where the base module takes it (issue 15), else the architecture's
    assert ckpt["sr_lightning"]["method"] in ("srvgg_compact", "compact")
    assert ckpt["hyper_parameters"]["net"]["arch"] == "Compact"
    # started from the released weights, then moved by two Adam steps
    start = torch.load(init, weights_only=True)
    trained = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    assert set(trained) == set(start)
    moved = max(float((trained[k] - start[k]).abs().max()) for k in start)
    assert 0 < moved < 0.01  # two steps of lr 2e-4 from the file, not from a fresh init


def test_init_from_a_released_model_of_another_architecture_is_refused(compose_train, tmp_path):
    from sr_lightning.core.builders import build_module

    path = save_release(released("span"), tmp_path / "span.pth")
    module = build_module(
        compose_train(
            "model=rrdbnet",
            "scale=4",
            "channels=3",
            "model.net.hyperparameters.num_blocks=1",
            "model.net.hyperparameters.num_filters=8",
        )
    )
    with pytest.raises(ValueError, match=r"SPAN x4 .*arch SPAN \(file\) vs ESRGAN \(this run\)"):
        module.init_net_from(str(path))
    good = save_release(released("esrgan"), tmp_path / "esrgan.safetensors")
    module.init_net_from(str(good))
    for key, value in released("esrgan").state_dict().items():
        assert torch.equal(module.net.state_dict()[key], value)


def test_srgan_trains_a_spandrel_generator_from_a_released_model(
    tiny_data, compose_train, tmp_path
):
    from sr_lightning.apps.train import train
    from tests.helpers.config import tiny_overrides

    init = save_release(released("esrgan"), tmp_path / "esrgan.pth")
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        "model=srgan",
        "loss=gan",
        "scale=4",
        "channels=3",
        "loss.content.pretrained=false",
        "callbacks.perceptual.lpips.enabled=false",  # no AlexNet weights offline
        "~model.net",
        "+model.net._target_=sr_lightning.nets.zoo.SpandrelNet",
        "+model.net.arch=ESRGAN",
        "+model.net.hyperparameters={num_filters: 8, num_blocks: 1}",  # scale, channels: the run's
        "model.discriminator.base_width=8",
        "model.discriminator.dense_width=16",
        f"model.init_from={init}",
        "model.patch_hr=32",
        "trainer.max_epochs=1",
        "trainer.max_steps=2",
    )
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["net"]["arch"] == "ESRGAN"
    start = torch.load(init, weights_only=True)
    trained = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    assert set(trained) == set(start)  # the generator keeps the architecture's own keys
    assert max(float((trained[k] - start[k]).abs().max()) for k in start) < 0.01


def test_a_scale_the_architecture_cannot_build_is_refused(compose_train):
    from sr_lightning.core.builders import build_module

    # spandrel's RRDBNet upsamples in x2 stages: asked for x3 it builds x2, which is caught
    with pytest.raises(ValueError, match=r"x2 with 3 channels but the run is scale=3"):
        build_module(compose_train("model=rrdbnet", "scale=3", "channels=3"))


def test_a_released_file_also_loads_into_a_named_spandrel_config(data_dir, compose_eval, tmp_path):
    net = released("esrgan")
    path = save_release(net, tmp_path / "esrgan.pth")
    overrides = [
        f"weights={path}",
        "model=rrdbnet",
        "scale=4",
        "channels=3",
        "model.net.hyperparameters.num_filters=8",
        "model.net.hyperparameters.num_blocks=1",
        set_override(data_dir),
    ]
    results = evaluate(compose_eval(*overrides))
    assert results["Set5"]["psnr_y"] == pytest.approx(
        reference_psnr(net, data_dir / "Set5", IMAGES), abs=1e-6
    )


@pytest.mark.parametrize("app", ["eval", "upscale", "export"])
@pytest.mark.parametrize("model", ["srgan", "rrdbnet"])
def test_the_apps_compose_with_the_gan_and_zoo_models(app, model):
    cfg = compose_app(app, f"model={model}")
    assert cfg.model.method == model


def test_hyperparameters_that_no_config_can_hold_are_named():
    from sr_lightning.nets.zoo import plain_hyperparameters

    kwargs = dict(in_chans=3, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2)
    default = plain_hyperparameters(SwinIR(**kwargs))  # LayerNorm is the default: rebuilt
    assert "norm_layer" not in default and default["depths"] == [1]
    with pytest.raises(ValueError, match=r"norm_layer=.*Identity.* cannot be written"):
        plain_hyperparameters(SwinIR(**kwargs, norm_layer=torch.nn.Identity))
