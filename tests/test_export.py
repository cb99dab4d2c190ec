"""sr-export: the generator alone, with metadata, in three formats that give back its outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors import safe_open

from sr_lightning.apps.export import export_generator
from sr_lightning.apps.export import run as run_export
from sr_lightning.core.config import register_resolvers
from sr_lightning.core.inference import Upscaler
from sr_lightning.core.model_file import read_checkpoint
from sr_lightning.core.model_files import resolve_model
from tests.helpers.checkpoints import TINY, make_checkpoint
from tests.helpers.compose import compose_app

register_resolvers()

pytestmark = pytest.mark.filterwarnings(
    "ignore:VGGContentLoss uses randomly initialised:UserWarning",
    "ignore:.*does not have many workers.*",
    "ignore:.*smaller than the logging interval.*",
    "ignore:.*no `val_dataloader`.*",
    "ignore:.*LeafSpec.*",
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    return {m: make_checkpoint(folder / f"{m}.ckpt", m) for m in TINY}


def lr_image(channels: int, h: int = 19, w: int = 23, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((h, w, channels), dtype=np.float32)


@pytest.mark.parametrize(
    ("method", "fmt"),
    [
        *((m, f) for m in ("srresnet", "srcnn") for f in ("safetensors", "torchscript", "onnx")),
        ("srgan", "safetensors"),  # the SRResNet generator again: one format is enough
    ],
)
def test_exported_file_round_trips_to_the_same_outputs(checkpoints, tmp_path, method, fmt):
    ref_gen = resolve_model(ckpt_path=checkpoints[method])
    out = export_generator(ref_gen, tmp_path / f"g.{fmt}", fmt)
    gen = resolve_model(weights=out)
    assert (gen.scale, gen.channels, gen.method) == (ref_gen.scale, ref_gen.channels, method)
    assert gen.upsampling == ("pre" if method == "srcnn" else "post")
    for channels in (ref_gen.channels, 3):  # the model's own input, and an RGB photo
        image = lr_image(channels)
        expected = Upscaler(ref_gen).upscale(image)
        got = Upscaler(gen, tile=8).upscale(image)
        assert np.abs(got - expected).max() < 1e-4
    assert not list(tmp_path.glob(".*")), "no temporary file left behind"


def test_only_the_generator_is_exported_with_srgan_ema_weights(checkpoints, tmp_path):
    state = read_checkpoint(checkpoints["srgan"])["state_dict"]
    assert int(state["ema.n_averaged"]) > 0
    live = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    ema = {k[len("ema.module.") :]: v for k, v in state.items() if k.startswith("ema.module.")}
    gen = resolve_model(ckpt_path=checkpoints["srgan"])
    out = export_generator(gen, tmp_path / "g.safetensors", "safetensors")
    with safe_open(str(out), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
        weights = {k: f.get_tensor(k) for k in keys}
    assert keys == set(live)  # no discriminator, VGG, EMA shadow, optimizer
    differs = [k for k in keys if not torch.equal(live[k], ema[k])]
    assert differs, "the fixture must make the live generator differ from its EMA"
    for k in keys:
        assert torch.equal(weights[k], ema[k]), k
    assert meta["method"] == "srgan" and meta["scale"] == "2" and meta["channels"] == "3"
    net_cfg = json.loads(meta["net"])
    assert net_cfg["_target_"] == "sr_lightning.nets.srresnet.SRResNet"
    assert net_cfg["num_blocks"] == 2 and meta["upsampling"] == "post"


def test_onnx_has_dynamic_height_and_width_and_runs_at_two_sizes(checkpoints, tmp_path):
    import onnxruntime as ort

    gen = resolve_model(ckpt_path=checkpoints["srresnet"])
    out = export_generator(gen, tmp_path / "g.onnx", "onnx", opset=17)
    model = onnx.load(str(out))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["method"] == "srresnet" and meta["scale"] == "2"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    net = gen.net.eval()
    for shape in [(1, 3, 16, 20), (3, 3, 33, 9)]:
        x = torch.rand(shape)
        (y,) = session.run(None, {"lr": x.numpy()})
        assert y.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
        with torch.no_grad():
            assert np.abs(y - net(x).numpy()).max() < 1e-4


def test_a_failed_check_publishes_nothing(checkpoints, tmp_path, monkeypatch):
    import sr_lightning.apps.export as export

    gen = resolve_model(ckpt_path=checkpoints["srresnet"])
    monkeypatch.setattr(export, "VERIFY_ATOL", -1.0)  # every check fails
    with pytest.raises(export.ExportError, match="differs"):
        export_generator(gen, tmp_path / "g.safetensors", "safetensors")
    assert list(tmp_path.iterdir()) == []


def compose_export(*overrides: str):
    return compose_app("export", *overrides)


def test_the_app_refuses_to_overwrite_unless_asked(checkpoints, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"precious")
    args = [f"ckpt_path={checkpoints['srresnet']}", "format=safetensors", f"output={out}"]
    with pytest.raises(FileExistsError, match="overwrite=true"):
        run_export(compose_export(*args))
    assert out.read_bytes() == b"precious"
    run_export(compose_export(*args, "overwrite=true"))
    assert resolve_model(weights=out).scale == 2
    assert "max abs diff" in capsys.readouterr().out


def test_the_app_exports_a_state_dict_named_by_model(checkpoints, tmp_path):
    """A bare .pth (e.g. converted from elsewhere) + model= becomes a self-describing file."""
    trained = resolve_model(ckpt_path=checkpoints["srcnn"])
    pth = tmp_path / "srcnn.pth"
    torch.save(trained.net.state_dict(), pth)
    cfg = compose_export(
        f"weights={pth}", "model=srcnn", "scale=3", "channels=1", "format=safetensors"
    )
    written = run_export(cfg)
    assert written == tmp_path / "srcnn.safetensors"
    gen = resolve_model(weights=written)
    assert (gen.method, gen.scale, gen.channels, gen.upsampling) == ("srcnn", 3, 1, "pre")
    image = lr_image(1)
    ref = Upscaler(trained).upscale(image)
    assert np.abs(Upscaler(gen).upscale(image) - ref).max() < 1e-6


def test_loading_checks_what_the_user_asked_for(checkpoints, tmp_path):
    gen = resolve_model(ckpt_path=checkpoints["srresnet"])
    out = export_generator(gen, tmp_path / "g.torchscript", "torchscript")
    with pytest.raises(ValueError, match="scale=4"):
        resolve_model(torchscript=out, expect={"scale": 4})
    with pytest.raises(ValueError, match="exactly one"):
        resolve_model(torchscript=out, ckpt_path=checkpoints["srresnet"])


def test_an_onnx_file_without_an_upsampling_entry_takes_its_net_class_kind(checkpoints, tmp_path):
    """Older or hand-edited files: the kind comes from the class the metadata names, not
    from its name (BicubicNet is "pre"; no name list would know it)."""
    import onnx

    gen = resolve_model(ckpt_path=checkpoints["srcnn"])
    out = export_generator(gen, tmp_path / "g.onnx", "onnx")
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props if p.key != "upsampling"}
    props["net"] = json.dumps({"_target_": "sr_lightning.nets.bicubic.BicubicNet"})
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    assert resolve_model(onnx=out).upsampling == "pre"
    del props["net"]
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(out))
    with pytest.raises(ValueError, match="neither 'upsampling' nor the net's class"):
        resolve_model(onnx=out)
