"""Pixel, VGG content and adversarial losses (CPU, no internet, random VGG weights)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import vgg as tv_vgg

from sr_lightning.common import download as dl
from sr_lightning.common import pretrained as pretrained_mod
from sr_lightning.common.download import RemoteFile
from sr_lightning.losses import AdversarialLoss, PixelLoss, VGGContentLoss
from sr_lightning.losses.content import (
    VGG19_LAYERS,
    VGGWeightsUnavailableError,
    build_vgg19_features,
    vgg19_cache_path,
)

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _images(channels: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, channels, 32, 32, generator=g), torch.rand(
        2, channels, 32, 32, generator=g
    )


def _random_loss(**kwargs) -> VGGContentLoss:
    with pytest.warns(UserWarning, match="random"):
        return VGGContentLoss(pretrained=False, **kwargs)


def _expected_layers_from_config_e() -> dict[str, tuple[int, int]]:
    """name -> (index in features, conv out_channels), walked from torchvision's cfg 'E'."""
    out, block, conv, index = {}, 1, 0, 0
    for v in tv_vgg.cfgs["E"]:
        if v == "M":
            block, conv, index = block + 1, 0, index + 1
            continue
        conv += 1
        out[f"conv{block}_{conv}"] = (index, v)
        out[f"relu{block}_{conv}"] = (index + 1, v)
        index += 2
    return out


# --------------------------------------------------------------------------- layers


def test_layer_names_match_torchvision_vgg19() -> None:
    expected = _expected_layers_from_config_e()
    assert {name: idx for name, (idx, _) in expected.items()} == VGG19_LAYERS
    assert len(VGG19_LAYERS) == 32  # 16 convs, each with its ReLU
    with torch.device("meta"):  # structure only, no weight init cost
        reference = tv_vgg.vgg19(weights=None).features
    for name, (idx, channels) in expected.items():
        kind = nn.Conv2d if name.startswith("conv") else nn.ReLU
        assert isinstance(reference[idx], kind), name
        conv = reference[idx if kind is nn.Conv2d else idx - 1]
        assert conv.out_channels == channels, name


@pytest.mark.parametrize("layer", ["conv1_1", "relu2_2", "relu3_4", "conv5_4", "relu5_4"])
def test_truncation_ends_at_the_named_layer(layer: str) -> None:
    idx, channels = _expected_layers_from_config_e()[layer]
    features = build_vgg19_features(layer)
    assert len(features) == idx + 1
    last = features[-1]
    if layer.startswith("conv"):
        assert isinstance(last, nn.Conv2d) and last.out_channels == channels
    else:
        assert isinstance(last, nn.ReLU) and features[-2].out_channels == channels
    block = int(layer[4])  # "conv5_4" / "relu5_4" -> 5
    assert sum(isinstance(m, nn.MaxPool2d) for m in features) == block - 1


def test_unknown_layer_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="relu5_4") as info:
        VGGContentLoss(layer="relu6_1", pretrained=False)
    assert "conv1_1" in str(info.value) and "relu6_1" in str(info.value)
    with pytest.raises(ValueError, match="criterion"):
        VGGContentLoss(layer="relu1_1", criterion="huber", pretrained=False)


# --------------------------------------------------------------------------- frozen / hidden VGG


class _Owner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Conv2d(3, 3, 3, padding=1)
        self.content = _random_loss(layer="relu2_2")


def test_vgg_is_frozen_and_gets_no_grad() -> None:
    loss_fn = _random_loss(layer="relu2_2")
    sr, hr = _images()
    sr.requires_grad_(True)
    loss_fn(sr, hr).backward()
    params = list(loss_fn.vgg.parameters())
    assert params and all(not p.requires_grad and p.grad is None for p in params)
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_parent_train_keeps_vgg_in_eval_and_state_dict_has_no_vgg() -> None:
    owner = _Owner()
    owner.train()
    assert owner.training and owner.content.training
    assert all(not m.training for m in owner.content.vgg.modules())

    keys = set(owner.state_dict())
    assert keys == {"net.weight", "net.bias"}
    assert sum(p.numel() for p in owner.parameters()) == sum(
        p.numel() for p in owner.net.parameters()
    )
    other = _Owner()
    other.load_state_dict(owner.state_dict(), strict=True)
    assert torch.equal(other.net.weight, owner.net.weight)


def test_device_and_dtype_moves_reach_the_vgg() -> None:
    owner = _Owner().to(torch.float64)
    assert all(p.dtype == torch.float64 for p in owner.content.vgg.parameters())
    assert owner.content.mean.dtype == torch.float64
    sr, hr = _images()
    assert owner.content(sr.double(), hr.double()).dtype == torch.float64


# --------------------------------------------------------------------------- weights


def test_weights_path_loads_a_torchvision_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    # torchvision's VGG19 as vgg19() builds it, minus the slow classifier init
    reference = tv_vgg.VGG(tv_vgg.make_layers(tv_vgg.cfgs["E"]), init_weights=False).eval()
    for p in reference.features.parameters():
        nn.init.normal_(p, std=0.05)
    state = {k: v for k, v in reference.state_dict().items() if k.startswith("features.")}
    state["classifier.6.bias"] = reference.classifier[6].bias.detach().clone()  # extra keys ignored
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)

    loss_fn = VGGContentLoss(layer="relu3_4", weights_path=str(path))
    sr, _ = _images()
    idx = VGG19_LAYERS["relu3_4"]
    with torch.no_grad():
        expected = reference.features[: idx + 1]((sr - MEAN) / STD)
        assert torch.equal(loss_fn.features(sr), expected)


def test_bad_weights_path_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        VGGContentLoss(weights_path=str(missing))
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match=r"wrong\.pth"):
        VGGContentLoss(layer="relu1_1", weights_path=str(wrong))


def _offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def fail(request, *args, **kwargs):
        calls.append(request.full_url)
        raise dl.URLError("network is unreachable")

    monkeypatch.setattr(dl, "urlopen", fail)
    return calls


def test_offline_without_cache_says_what_to_download_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = _offline(monkeypatch)
    target = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert vgg19_cache_path() == target
    with pytest.raises(VGGWeightsUnavailableError) as info:
        VGGContentLoss()
    message = str(info.value)
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert str(target) in message
    assert "$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth" in message
    assert "loss.content.weights_path" in message
    assert calls == ["https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"]
    assert not target.exists()


def test_cached_weights_are_used_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = _offline(monkeypatch)
    features = build_vgg19_features("relu1_2")
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-test.pth"
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    prefix = hashlib.sha256(cached.read_bytes()).hexdigest()[:8]
    # Same mechanism as the real entry, with a file whose hash prefix we can know.
    fake = RemoteFile(
        url="https://example.invalid/vgg19-test.pth", filename=cached.name, sha256=prefix
    )
    monkeypatch.setitem(pretrained_mod.BACKBONES, "vgg19", fake)

    loss_fn = VGGContentLoss(layer="relu1_2", pretrained=True)
    assert calls == []
    assert torch.equal(loss_fn.vgg[0].weight, features[0].weight)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("criterion", ["mse", "l1"])
def test_content_loss_equals_hand_computation(criterion: str) -> None:
    rescale = 0.25
    loss_fn = _random_loss(layer="relu2_2", criterion=criterion, rescale=rescale)
    sr, hr = _images()
    with torch.no_grad():
        diff = loss_fn.vgg((sr - MEAN) / STD) * rescale - loss_fn.vgg((hr - MEAN) / STD) * rescale
        expected = diff.square().mean() if criterion == "mse" else diff.abs().mean()
        got = loss_fn(sr, hr)
    torch.testing.assert_close(got, expected)
    assert got > 0


def test_rescale_scales_feature_maps_before_mse() -> None:
    loss_fn = _random_loss(layer="conv2_1", rescale=1.0)
    sr, hr = _images()
    with torch.no_grad():
        plain = loss_fn(sr, hr)
        loss_fn.rescale = 1 / 12.75
        torch.testing.assert_close(loss_fn(sr, hr), plain / 12.75**2)


def test_grey_input_is_repeated_to_rgb() -> None:
    loss_fn = _random_loss(layer="relu1_2")
    sr, hr = _images(channels=1)
    with torch.no_grad():
        torch.testing.assert_close(
            loss_fn(sr, hr), loss_fn(sr.repeat(1, 3, 1, 1), hr.repeat(1, 3, 1, 1))
        )
    with pytest.raises(ValueError, match="N, 1 or 3"):
        loss_fn(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))


@pytest.mark.parametrize("kind", ["mse", "l1", "charbonnier"])
def test_pixel_loss_values(kind: str) -> None:
    sr = torch.tensor([0.0, 0.5, 1.0, 0.25])
    hr = torch.tensor([0.5, 0.5, 0.0, 0.75])
    d = [-0.5, 0.0, 1.0, -0.5]
    eps = 1e-3
    expected = {
        "mse": sum(x * x for x in d) / 4,
        "l1": sum(abs(x) for x in d) / 4,
        "charbonnier": sum(math.sqrt(x * x + eps * eps) for x in d) / 4,
    }[kind]
    assert PixelLoss(kind)(sr, hr).item() == pytest.approx(expected, rel=1e-6)


def test_pixel_loss_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="charbonnier"):
        PixelLoss("l2")


# --------------------------------------------------------------------------- adversarial

REAL = [2.0, -1.0, 0.5]
FAKE = [-3.0, 0.0, 1.5]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _bce(x: float, y: float) -> float:
    s = 1 / (1 + math.exp(-x))
    return -(y * math.log(s) + (1 - y) * math.log(1 - s))


def _hand(kind: str, y: float = 1.0) -> tuple[float, float, float]:
    """(real term, fake term, generator loss) from the textbook formulas."""
    if kind == "vanilla":
        return (
            _mean(_bce(r, y) for r in REAL),
            _mean(_bce(f, 0.0) for f in FAKE),
            _mean(_bce(f, 1.0) for f in FAKE),
        )
    if kind == "lsgan":
        return (
            _mean((r - y) ** 2 for r in REAL),
            _mean(f**2 for f in FAKE),
            _mean((f - 1) ** 2 for f in FAKE),
        )
    return (
        _mean(max(0.0, 1 - r) for r in REAL),
        _mean(max(0.0, 1 + f) for f in FAKE),
        -_mean(FAKE),
    )


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "hinge"])
def test_adversarial_values_equal_hand_formulas(kind: str) -> None:
    loss = AdversarialLoss(kind)
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    real_term, fake_term, gen = _hand(kind)
    terms = loss.discriminator_terms(real, fake)
    assert [t.item() for t in terms] == pytest.approx([real_term, fake_term], rel=1e-5)
    assert loss.discriminator_loss(real, fake).item() == pytest.approx(
        real_term + fake_term, rel=1e-5
    )
    assert loss.generator_loss(fake).item() == pytest.approx(gen, rel=1e-5)


@pytest.mark.parametrize("kind", ["vanilla", "lsgan"])
def test_label_smoothing_changes_only_the_real_term(kind: str) -> None:
    loss = AdversarialLoss(kind)
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    sharp = loss.discriminator_terms(real, fake)
    smooth = loss.discriminator_terms(real, fake, real_label=0.9)
    assert torch.equal(smooth[1], sharp[1])
    assert smooth[0].item() != pytest.approx(sharp[0].item())
    assert smooth[0].item() == pytest.approx(_hand(kind, y=0.9)[0], rel=1e-5)


def test_adversarial_rejects_bad_arguments() -> None:
    real, fake = torch.tensor(REAL), torch.tensor(FAKE)
    with pytest.raises(ValueError, match="hinge"):
        AdversarialLoss("hinge").discriminator_loss(real, fake, real_label=0.9)
    with pytest.raises(ValueError, match="real_label"):
        AdversarialLoss("vanilla").discriminator_loss(real, fake, real_label=1.5)
    with pytest.raises(ValueError, match="vanilla"):
        AdversarialLoss("wgan")
