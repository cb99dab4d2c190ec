"""LPIPS / DISTS (sr_lightning.core.perceptual): equal to the reference packages on the same images
and the same backbone file (a seeded random one made here), in validation, sr-eval and the
SRGAN preset's checkpoint selection; offline without weights, one clear line at start-up.

The references are built their own way: ``lpips.LPIPS`` / ``DISTS_pytorch.DISTS`` take
torchvision's features, which we hand them loaded with torchvision's own ``load_state_dict``
(their "pretrained" torchvision call is the only thing replaced: it would download).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torchvision.models import alexnet
from torchvision.models import vgg as tv_vgg

from sr_lightning.common import download as dl
from sr_lightning.common.pretrained import WeightsUnavailableError
from sr_lightning.core.perceptual import PerceptualMeans, build_scorer
from tests.helpers.config import tiny_overrides

lpips = pytest.importorskip("lpips")  # a dev dependency (pyproject.toml)
DISTS_pytorch = pytest.importorskip("DISTS_pytorch")

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*parameter 'pretrained' is deprecated.*",
    "ignore:Arguments other than a weight enum.*",
    "ignore:VGGContentLoss uses randomly initialised:UserWarning",
    "ignore:.*does not have many workers.*",
    "ignore:.*smaller than the logging interval.*",
    "ignore:Using ModelCheckpoint with manual optimization:UserWarning",
)


def _features(arch: str) -> nn.Sequential:
    torch.manual_seed({"alexnet": 1, "vgg16": 2}[arch])
    if arch == "alexnet":
        return alexnet(weights=None).features
    features = tv_vgg.make_layers(tv_vgg.cfgs["D"])  # VGG16 = config "D"
    for m in features.modules():  # torchvision's init, so that deep features do not vanish
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.normal_(m.bias, std=0.01)
    return features


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, Path]:
    """Seeded random torchvision-layout state dicts (``features.*`` only) on disk."""
    root = tmp_path_factory.mktemp("backbones")
    paths = {}
    for arch in ("alexnet", "vgg16"):
        state = {f"features.{k}": v for k, v in _features(arch).state_dict().items()}
        paths[arch] = root / f"{arch}-random.pth"
        torch.save(state, paths[arch])
    return paths


def _torchvision_features(path: Path, arch: str) -> SimpleNamespace:
    """What ``tv.<arch>(pretrained=True)`` gives the references: ``.features``, loaded."""
    features = alexnet(weights=None).features if arch == "alexnet" else _features("vgg16")
    state = torch.load(path, weights_only=True)
    features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})
    return SimpleNamespace(features=features)


def reference_lpips(path: Path, net: str, monkeypatch) -> nn.Module:
    arch = {"alex": "alexnet", "vgg": "vgg16"}[net]
    monkeypatch.setattr(
        lpips.pretrained_networks.tv, arch, lambda **_: _torchvision_features(path, arch)
    )
    return lpips.LPIPS(net=net, verbose=False).eval()


def reference_dists(path: Path, monkeypatch) -> nn.Module:
    monkeypatch.setattr(
        DISTS_pytorch.DISTS_pt.models, "vgg16", lambda **_: _torchvision_features(path, "vgg16")
    )
    return DISTS_pytorch.DISTS().eval()


def settings(backbones, lpips_net="alex", dists=True) -> dict:
    weights = backbones["alexnet" if lpips_net == "alex" else "vgg16"]
    return {
        "lpips": {"enabled": True, "net": lpips_net, "weights_path": str(weights)},
        "dists": {"enabled": dists, "weights_path": str(backbones["vgg16"])},
    }


def protocol(sr: torch.Tensor, hr: torch.Tensor, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """docs/metrics.md by hand: SR rounded to 8 bits (half up), borders cropped, grey → RGB."""
    sr = torch.floor(sr.clamp(0, 1) * 255 + 0.5) / 255
    sr, hr = sr[..., crop:-crop, crop:-crop], hr[..., crop:-crop, crop:-crop]
    return sr.expand(-1, 3, -1, -1), hr.expand(-1, 3, -1, -1)


def _pair(channels: int = 3, size: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(channels)
    hr = torch.rand(2, channels, size, size, generator=g)
    sr = (hr + 0.1 * torch.randn(2, channels, size, size, generator=g)).clamp(0, 1)
    return sr, hr


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("channels", [3, 1])
def test_lpips_equals_the_lpips_package(backbones, monkeypatch, net, channels):
    scorer = build_scorer(settings(backbones, net, dists=False), "perceptual")
    sr, hr = _pair(channels)
    ours = scorer(sr, hr, crop=2)["lpips"]
    a, b = protocol(sr, hr, 2)
    with torch.no_grad():
        ref = reference_lpips(backbones[{"alex": "alexnet", "vgg": "vgg16"}[net]], net, monkeypatch)
        expected = ref(a, b, normalize=True).flatten().double()
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    assert (ours > 0).all() and ours[0] != ours[1]


def test_dists_equals_the_dists_package(backbones, monkeypatch):
    scorer = build_scorer(settings(backbones), "perceptual")
    sr, hr = _pair(3, size=48)
    ours = scorer(sr, hr, crop=3)["dists"]
    a, b = protocol(sr, hr, 3)
    with torch.no_grad():
        expected = torch.stack(
            [
                reference_dists(backbones["vgg16"], monkeypatch)(a[i : i + 1], b[i : i + 1])
                for i in range(2)
            ]
        ).double()
    torch.testing.assert_close(ours, expected.flatten(), rtol=1e-5, atol=1e-6)
    assert torch.equal(scorer(hr, hr, crop=3)["dists"] < 1e-6, torch.tensor([True, True]))


def test_means_merge_over_ranks_like_one_process(backbones):
    """DDP syncs the states with sum: two shards merged = every image once."""
    scorer = build_scorer(settings(backbones), "perceptual")
    sr, hr = _pair(3)
    one, two = scorer(sr[:1], hr[:1], 2), scorer(sr[1:], hr[1:], 2)
    whole, first, second = (PerceptualMeans(["lpips", "dists"], 2) for _ in range(3))
    whole.update(one)
    whole.update(two)
    first.update(one)  # rank 0's shard
    second.update(two)  # rank 1's
    first.merge_state(second)
    for name in ("lpips", "dists"):
        assert first.compute()[name] == whole.compute()[name]
        assert float(whole.compute()[name]) == pytest.approx(float(one[name] + two[name]) / 2)
    assert int(first.count) == 2


def _offline(monkeypatch, tmp_path) -> list[str]:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls: list[str] = []

    def fail(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", request))
        raise dl.URLError("no network in tests")

    monkeypatch.setattr(dl, "urlopen", fail)
    return calls


def test_srgan_preset_offline_without_weights_fails_at_start_up_in_one_line(
    tiny_data, compose_train, tmp_path, monkeypatch
):
    from sr_lightning.apps.train import train

    calls = _offline(monkeypatch, tmp_path)
    no_vgg = "loss.content.pretrained=false"  # the content loss's VGG19 would be missed first
    gan = ["model=srgan", "loss=gan", "callbacks=srgan", "model.init_from=null"]
    cfg = compose_train(*tiny_overrides(tiny_data), *gan, no_vgg)
    assert cfg.callbacks.model_checkpoint.monitor == "val/lpips"
    assert cfg.callbacks.model_checkpoint.mode == "min"
    with pytest.raises(WeightsUnavailableError) as info:
        train(cfg)
    message = str(info.value)
    target = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert "\n" not in message
    assert str(target) in message and "download.pytorch.org/models/alexnet-owt-7be5be79" in message
    assert "callbacks.perceptual.lpips.weights_path=" in message
    assert "callbacks.perceptual.lpips.enabled=false" in message
    assert calls == ["https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"]
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained

    off = compose_train(
        *tiny_overrides(tiny_data), *gan, "callbacks.perceptual.lpips.enabled=false"
    )
    assert off.callbacks.model_checkpoint.monitor == "val/psnr"
    assert off.callbacks.model_checkpoint.mode == "max"


def test_a_missing_weights_path_names_the_key(tmp_path):
    bad = {"dists": {"enabled": True, "weights_path": str(tmp_path / "nope.pth")}}
    with pytest.raises(FileNotFoundError, match=r"perceptual\.dists\.weights_path=.*nope\.pth"):
        build_scorer(bad, "perceptual")
    with pytest.raises(ValueError, match=r"perceptual\.lpips: unknown key\(s\) \['weight_path'\]"):
        build_scorer({"lpips": {"enabled": True, "weight_path": "x"}}, "perceptual")


def test_sr_eval_auto_is_on_for_srgan_only_with_weights_on_disk_and_true_fails_clearly(
    backbones, tmp_path, monkeypatch
):
    from sr_lightning.core.perceptual import enabled_metrics

    calls = _offline(monkeypatch, tmp_path)
    auto = {"lpips": {"enabled": "auto", "net": "alex", "weights_path": None}}
    assert enabled_metrics(auto, "perceptual", "srgan") == []  # nothing on disk: skipped
    given = {"lpips": {**auto["lpips"], "weights_path": str(backbones["alexnet"])}}
    assert enabled_metrics(given, "perceptual", "srgan") == ["lpips"]
    assert enabled_metrics(given, "perceptual", "espcn") == []
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")  # present (the hash is checked when it is loaded)
    assert enabled_metrics(auto, "perceptual", "srgan") == ["lpips"]
    assert calls == []  # auto never touches the network
    cached.unlink()
    with pytest.raises(WeightsUnavailableError) as info:
        build_scorer({"lpips": {"enabled": True}}, "perceptual")
    message = str(info.value)
    assert "perceptual.lpips.weights_path=" in message and str(cached) in message
    assert "perceptual.lpips.enabled=false turns LPIPS off" in message


# -- where they appear: validation, checkpoint selection, sr-eval --------------------------------

TINY_GAN = [
    "model=srgan",
    "loss=gan",
    "callbacks=srgan",  # best by val/lpips
    "scale=2",
    "channels=3",
    "model.patch_hr=24",
    "model.net.num_blocks=1",
    "model.net.width=8",
    "model.discriminator.base_width=8",
    "model.discriminator.dense_width=16",
    "loss.content.pretrained=false",
    "model.init_from=null",
    "trainer.max_epochs=2",
]


@pytest.fixture
def srgan_run(tiny_data, compose_train, backbones, tmp_path, monkeypatch) -> Path:
    """A two-epoch SRGAN run with LPIPS and DISTS in validation (the random backbones)."""
    from sr_lightning.apps.train import train

    _offline(monkeypatch, tmp_path)
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        *TINY_GAN,
        f"callbacks.perceptual.lpips.weights_path={backbones['alexnet']}",
        "callbacks.perceptual.dists.enabled=true",
        f"callbacks.perceptual.dists.weights_path={backbones['vgg16']}",
    )
    metrics = train(cfg)
    assert {"val/lpips", "val/dists", "val/lpips_best", "val/dists_best"} <= set(metrics)
    return tmp_path / "run"


def check_validation_logged_lpips_and_kept_the_lowest(srgan_run: Path) -> None:
    rows = list(csv.DictReader(next(srgan_run.rglob("metrics.csv")).read_text().splitlines()))
    epochs = [r for r in rows if r.get("val/lpips")]
    assert len(epochs) == 2 and all(r.get("val/dists") for r in epochs)
    lowest = min(float(r["val/lpips"]) for r in epochs)
    assert float(epochs[-1]["val/lpips_best"]) == pytest.approx(lowest)
    (best,) = (srgan_run / "checkpoints").glob("best-*.ckpt")
    assert best.name.endswith(f"lpips{lowest:.4f}.ckpt")


def test_srgan_validates_and_keeps_best_by_lpips_and_sr_eval_matches_the_references(
    srgan_run, tiny_data, compose_train, backbones, tmp_path, monkeypatch
):
    """One short SRGAN run serves both: its validation and checkpoint, then sr-eval."""
    check_validation_logged_lpips_and_kept_the_lowest(srgan_run)
    from sr_lightning.apps.eval import evaluate
    from sr_lightning.data.degradation import bicubic_upscale, degrade_eval, to_float
    from sr_lightning.data.images import load_image

    ref_lpips = reference_lpips(backbones["alexnet"], "alex", monkeypatch)
    ref_dists = reference_dists(backbones["vgg16"], monkeypatch)
    weights = [
        f"perceptual.lpips.weights_path={backbones['alexnet']}",
        f"perceptual.dists.weights_path={backbones['vgg16']}",
        f"paths.data_dir={tiny_data}",
        "data.test_sets=[val]",
        "trainer=cpu",
    ]
    on = ["perceptual.lpips.enabled=true", "perceptual.dists.enabled=true"]
    runs = {
        # bicubic: on when asked; the SRGAN checkpoint: on by default (auto, weights on disk)
        "bicubic": ["model=bicubic", "scale=2", "channels=3", *weights, *on],
        "srgan": [f"ckpt_path={srgan_run / 'checkpoints' / 'last.ckpt'}", *weights],
    }
    for name, overrides in runs.items():
        cfg = compose_train(*overrides, config_name="eval")
        cfg.paths.output_dir = str(tmp_path / f"eval_{name}")
        results = evaluate(cfg)["val"]
        rows = list(
            csv.DictReader((tmp_path / f"eval_{name}" / "per_image.csv").read_text().splitlines())
        )
        assert list(rows[0]) == ["set", "image", "psnr_y", "ssim_y", "lpips", "dists"]
        assert (
            json.loads((tmp_path / f"eval_{name}" / "results.json").read_text())["val"] == results
        )
        generator = None
        if name == "srgan":
            from sr_lightning.core.model_files import resolve_model

            generator = resolve_model(ckpt_path=srgan_run / "checkpoints" / "last.ckpt")
        for row in rows:
            hr = to_float(load_image(tiny_data / "val" / f"{row['image']}.png")).unsqueeze(0)
            hr = hr[..., : hr.shape[-2] // 2 * 2, : hr.shape[-1] // 2 * 2]
            lr = degrade_eval(hr, 2)
            with torch.no_grad():
                sr = bicubic_upscale(lr, 2) if generator is None else generator(lr)
                a, b = protocol(sr, hr, 2)
                expected_lpips = ref_lpips(a, b, normalize=True).item()
                expected_dists = ref_dists(a, b).item()
            assert float(row["lpips"]) == pytest.approx(expected_lpips, rel=1e-4, abs=1e-6)
            assert float(row["dists"]) == pytest.approx(expected_dists, rel=1e-4, abs=1e-6)
        for key in ("lpips", "dists"):
            mean = math.fsum(float(r[key]) for r in rows) / len(rows)
            assert results[key] == pytest.approx(mean, abs=1e-12)
        info = json.loads((tmp_path / f"eval_{name}" / "run_info.json").read_text())
        assert set(info["bicubic"]["val"]) == {"psnr_y", "ssim_y", "lpips", "dists"}


def test_lpips_best_survives_a_resume_and_ignores_the_sanity_check(backbones):
    """The lowest val/lpips is the whole run's: restored from the checkpoint, not reset by a
    new fit, and never taken from the sanity check of an untrained model."""
    from sr_lightning.core.perceptual import PerceptualValidation

    logged = {}
    module = SimpleNamespace(
        scale=2, device=torch.device("cpu"), eval_set_names=lambda stage: ["val"],
        log=lambda key, value, **_: logged.__setitem__(key, float(value)),
    )  # fmt: skip
    callback = PerceptualValidation(**settings(backbones, dists=False))
    callback.load_state_dict({"best": {"lpips": 1e-6}})  # what the resumed checkpoint held
    sr, hr = _pair()

    def validate(sanity: bool, sr: torch.Tensor) -> None:
        trainer = SimpleNamespace(sanity_checking=sanity)
        callback.on_validation_start(trainer, module)
        callback.on_validation_batch_end(trainer, module, {"sr": sr}, {"hr": hr}, 0)
        callback.on_validation_epoch_end(trainer, module)

    if hasattr(callback, "on_train_start"):
        callback.on_train_start(SimpleNamespace(sanity_checking=False), module)
    validate(True, sr)  # sanity check: logged, not the best
    assert "val/lpips_best" not in logged and callback.best == {"lpips": 1e-6}
    validate(False, sr)
    assert logged["val/lpips"] > 1e-6
    assert logged["val/lpips_best"] == pytest.approx(1e-6)
    assert callback.state_dict() == {"best": {"lpips": pytest.approx(1e-6)}}
