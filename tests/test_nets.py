"""Tests for the plain nets: shapes, parameter counts, exact forward maths, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.nets import (
    ESPCN,
    SRCNN,
    VDSR,
    Discriminator,
    SRResNet,
    count_parameters,
    upsampling_kind,
)

# Odd, non-square LR size: catches padding and shuffle mistakes that square/even sizes hide.
H, W = 7, 11


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These tensors are tiny: intra-op threads only add sync cost, and on a busy 2-core box
    # they made this file ~50x slower. Restored afterwards so other modules are unaffected.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _randn(shape: tuple[int, ...], g: torch.Generator, std: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64) * std


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_output_shape(scale: int, channels: int) -> None:
    net = ESPCN(scale=scale, channels=channels)
    y = net(_rand(2, channels, H, W))
    assert y.shape == (2, channels, H * scale, W * scale)
    assert net.upsampling == "post" and net.scale == scale


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_srresnet_output_shape(scale: int, channels: int) -> None:
    net = SRResNet(scale=scale, channels=channels, num_blocks=2, width=8)
    y = net(_rand(2, channels, H, W))
    assert y.shape == (2, channels, H * scale, W * scale)
    assert net.upsampling == "post" and net.scale == scale


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "net_fn",
    [
        lambda c: SRCNN(channels=c),
        lambda c: SRCNN(channels=c, kernel_sizes=(9, 1, 5)),
        lambda c: SRCNN(channels=c, kernel_sizes=(9, 3, 5), padding_mode="replicate"),
        lambda c: VDSR(channels=c, depth=5, width=8),
    ],
    ids=["srcnn-955", "srcnn-915", "srcnn-935-replicate", "vdsr"],
)
def test_pre_upsampling_nets_keep_size(net_fn, channels: int) -> None:
    net = net_fn(channels)
    y = net(_rand(2, channels, 3 * H, 3 * W))
    assert y.shape == (2, channels, 3 * H, 3 * W)
    assert net.upsampling == "pre" and net.scale is None


# --------------------------------------------------------------------------- parameter counts
# Conv params = k·k·c_in·c_out (+ c_out biases); BN = 2·c (running stats are buffers);
# PReLU = 1 (one shared slope); Linear = in·out + out.


def test_srcnn_parameter_counts() -> None:
    # 9-5-5: 9·9·1·64+64 = 5,248; 5·5·64·32+32 = 51,232; 5·5·32·1+1 = 801  -> 57,281
    assert count_parameters(SRCNN()) == 57_281
    # 9-1-5: 5,248; 1·1·64·32+32 = 2,080; 801                            -> 8,129
    assert count_parameters(SRCNN(kernel_sizes=(9, 1, 5))) == 8_129
    # 9-3-5: 5,248; 3·3·64·32+32 = 18,464; 801                           -> 24,513
    assert count_parameters(SRCNN(kernel_sizes=(9, 3, 5))) == 24_513


def test_srcnn_init_is_the_papers_or_hes() -> None:
    torch.manual_seed(0)
    paper, he = SRCNN(), SRCNN(init="he")
    for p, h in zip(paper.body[::2], he.body[::2], strict=True):
        fan_in = h.weight[0].numel()
        assert float(p.weight.std()) == pytest.approx(1e-3, rel=0.1)
        assert float(h.weight.std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.15)
        assert not h.bias.any()
    with pytest.raises(ValueError, match="init must be"):
        SRCNN(init="xavier")


def test_espcn_parameter_count() -> None:
    # r=3, 1 channel: 5·5·1·64+64 = 1,664; 3·3·64·32+32 = 18,464; 3·3·32·9+9 = 2,601
    # -> 22,729 (the paper's count for this configuration).
    assert count_parameters(ESPCN(scale=3)) == 22_729
    # r=4: last conv 3·3·32·16+16 = 4,624 -> 1,664 + 18,464 + 4,624 = 24,752
    assert count_parameters(ESPCN(scale=4)) == 24_752


def test_vdsr_parameter_count() -> None:
    # first 3·3·1·64+64 = 640; 18 × (3·3·64·64+64) = 18 × 36,928 = 664,704; last 3·3·64+1 = 577
    assert count_parameters(VDSR()) == 665_921
    # without biases: 576 + 18 × 36,864 + 576 = 664,704
    assert count_parameters(VDSR(bias=False)) == 664_704


def test_srresnet_parameter_count() -> None:
    # head: 9·9·3·64+64 = 15,552+64 = 15,616, PReLU 1                     ->    15,617
    # block: 2 × 3·3·64·64 (no bias) = 73,728, 2 BN × 128 = 256, PReLU 1 ->    73,985
    #   16 blocks                                                          -> 1,183,760
    # trunk: 36,864 + BN 128                                               ->    36,992
    # ×2 stage: 3·3·64·256+256 = 147,712, PReLU 1 = 147,713; two stages    ->   295,426
    # tail: 9·9·64·3+3                                                     ->    15,555
    # total 15,617 + 1,183,760 + 36,992 + 295,426 + 15,555                 = 1,547,350
    assert count_parameters(SRResNet(scale=4, channels=3)) == 1_547_350
    # ×3: one stage 3·3·64·576+576+1 = 332,353 -> 1,547,350 - 295,426 + 332,353 = 1,584,277
    assert count_parameters(SRResNet(scale=3, channels=3)) == 1_584_277
    # norm="none": minus 33 BN × 128 = 4,224, plus 33 conv biases × 64 = 2,112 -> 1,545,238
    net = SRResNet(scale=4, channels=3, norm="none")
    assert count_parameters(net) == 1_545_238
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_discriminator_parameter_count() -> None:
    # conv1 3·3·3·64+64 = 1,792; then (no bias, BN 2c): 36,864+128; 73,728+256; 147,456+256;
    # 294,912+512; 589,824+512; 1,179,648+1,024; 2,359,296+1,024  -> convs 4,687,232
    # fc1 512·6·6·1024+1024 = 18,875,392; fc2 1024+1 = 1,025       -> 23,563,649
    assert count_parameters(Discriminator()) == 23_563_649


def test_count_parameters_trainable_only() -> None:
    net = SRCNN()
    for p in net.last_layer_parameters():
        p.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 57_281 - 801
    assert count_parameters(net) == 57_281


# --------------------------------------------------------------------------- exact forward maths
# Weights come from hand-written shapes (not the nets' own state dicts), so a wrong layer
# shape fails the strict load; the expected output is a second, functional implementation.


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, mode: str = "zeros"):
    p = w.shape[-1] // 2
    if mode == "replicate":
        return F.conv2d(F.pad(x, (p, p, p, p), mode="replicate"), w, b)
    return F.conv2d(x, w, b, padding=p)


def _pixel_shuffle_by_hand(z: torch.Tensor, r: int) -> torch.Tensor:
    # out[n, c, h·r+i, w·r+j] = z[n, c·r² + i·r + j, h, w]  (the paper's periodic shuffling)
    n, crr, h, w = z.shape
    out = z.new_zeros(n, crr // (r * r), h * r, w * r)
    for i in range(r):
        for j in range(r):
            out[:, :, i::r, j::r] = z[:, i * r + j :: r * r]
    return out


@pytest.mark.parametrize("padding_mode", ["zeros", "replicate"])
@pytest.mark.parametrize("kernel_sizes", [(9, 5, 5), (9, 1, 5)])
def test_srcnn_matches_functional_reference(padding_mode: str, kernel_sizes) -> None:
    g = torch.Generator().manual_seed(1)
    k1, k2, k3 = kernel_sizes
    shapes = {
        "body.conv1.weight": (64, 1, k1, k1),
        "body.conv1.bias": (64,),
        "body.conv2.weight": (32, 64, k2, k2),
        "body.conv2.bias": (32,),
        "body.conv3.weight": (1, 32, k3, k3),
        "body.conv3.bias": (1,),
    }
    sd = {k: _randn(s, g, std=0.1) for k, s in shapes.items()}
    net = SRCNN(kernel_sizes=kernel_sizes, padding_mode=padding_mode).double()
    net.load_state_dict(sd, strict=True)
    x = _rand(2, 1, 10, 13, seed=2).double()

    h = F.relu(_conv(x, sd["body.conv1.weight"], sd["body.conv1.bias"], padding_mode))
    h = F.relu(_conv(h, sd["body.conv2.weight"], sd["body.conv2.bias"], padding_mode))
    expected = _conv(h, sd["body.conv3.weight"], sd["body.conv3.bias"], padding_mode)

    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-6)


def test_srcnn_padding_modes_differ_only_near_the_border() -> None:
    torch.manual_seed(0)
    zeros = SRCNN(padding_mode="zeros")
    with torch.no_grad():
        for p in zeros.parameters():
            p.normal_(0, 0.05)
    replicate = SRCNN(padding_mode="replicate")
    replicate.load_state_dict(zeros.state_dict())
    x = _rand(1, 1, 24, 24, seed=3)
    a, b = zeros(x), replicate(x)
    r = 4 + 2 + 2  # receptive-field radius of 9-5-5
    torch.testing.assert_close(a[..., r:-r, r:-r], b[..., r:-r, r:-r])
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("scale", [2, 3])
def test_espcn_matches_functional_reference(scale: int) -> None:
    g = torch.Generator().manual_seed(4)
    c = 3
    shapes = {
        "body.conv1.weight": (64, c, 5, 5),
        "body.conv1.bias": (64,),
        "body.conv2.weight": (32, 64, 3, 3),
        "body.conv2.bias": (32,),
        "body.conv3.weight": (c * scale * scale, 32, 3, 3),
        "body.conv3.bias": (c * scale * scale,),
    }
    sd = {k: _randn(s, g, std=0.1) for k, s in shapes.items()}
    net = ESPCN(scale=scale, channels=c).double()
    net.load_state_dict(sd, strict=True)
    x = _rand(2, c, 5, 6, seed=5).double()

    h = torch.tanh(_conv(x, sd["body.conv1.weight"], sd["body.conv1.bias"]))
    h = torch.tanh(_conv(h, sd["body.conv2.weight"], sd["body.conv2.bias"]))
    z = _conv(h, sd["body.conv3.weight"], sd["body.conv3.bias"])
    expected = _pixel_shuffle_by_hand(z, scale)

    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-6)
    # Spot-check one sub-pixel by its index formula: channel 1, LR (2, 3), offset (i, j) = (1, 0).
    i, j = 1, 0
    got = net(x)[0, 1, 2 * scale + i, 3 * scale + j].item()
    assert got == pytest.approx(z[0, 1 * scale * scale + i * scale + j, 2, 3].item(), abs=1e-9)


def test_espcn_relu_activation_is_used() -> None:
    torch.manual_seed(0)
    tanh_net = ESPCN(scale=2)
    relu_net = ESPCN(scale=2, activation="relu")
    relu_net.load_state_dict(tanh_net.state_dict())
    x = _rand(1, 1, 6, 6, seed=6)
    assert not torch.allclose(tanh_net(x), relu_net(x))


@pytest.mark.parametrize("bias", [True, False])
def test_vdsr_matches_functional_reference(bias: bool) -> None:
    g = torch.Generator().manual_seed(7)
    depth, width, c = 5, 8, 1
    sd: dict[str, torch.Tensor] = {}
    for i in range(1, depth + 1):
        c_in = c if i == 1 else width
        c_out = c if i == depth else width
        sd[f"body.conv{i}.weight"] = _randn((c_out, c_in, 3, 3), g)
        if bias:
            sd[f"body.conv{i}.bias"] = _randn((c_out,), g)
    net = VDSR(channels=c, depth=depth, width=width, bias=bias).double()
    net.load_state_dict(sd, strict=True)
    x = _rand(2, c, 9, 7, seed=8).double()

    h = x
    for i in range(1, depth + 1):
        h = _conv(h, sd[f"body.conv{i}.weight"], sd.get(f"body.conv{i}.bias"))
        if i < depth:
            h = F.relu(h)
    expected = x + h

    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-6)


def test_vdsr_is_identity_when_last_layer_is_zero() -> None:
    net = VDSR()
    with torch.no_grad():
        net.body[-1].weight.zero_()
        net.body[-1].bias.zero_()
    x = _rand(1, 1, 9, 10, seed=9)
    torch.testing.assert_close(net(x), x)


def test_srresnet_matches_functional_reference_in_eval_mode() -> None:
    g = torch.Generator().manual_seed(10)
    c, width, blocks, scale = 3, 4, 2, 4

    def bn(prefix: str) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.weight": 1 + _randn((width,), g),
            f"{prefix}.bias": _randn((width,), g),
            f"{prefix}.running_mean": _randn((width,), g),
            f"{prefix}.running_var": 0.5 + _randn((width,), g).abs(),
            f"{prefix}.num_batches_tracked": torch.tensor(3),
        }

    sd: dict[str, torch.Tensor] = {
        "head.conv.weight": _randn((width, c, 9, 9), g, std=0.05),
        "head.conv.bias": _randn((width,), g),
        "head.act.weight": torch.tensor([0.25], dtype=torch.float64),
    }
    for b in range(blocks):
        sd[f"blocks.{b}.conv1.weight"] = _randn((width, width, 3, 3), g)
        sd.update(bn(f"blocks.{b}.bn1"))
        sd[f"blocks.{b}.act.weight"] = torch.tensor([0.1 * (b + 1)], dtype=torch.float64)
        sd[f"blocks.{b}.conv2.weight"] = _randn((width, width, 3, 3), g)
        sd.update(bn(f"blocks.{b}.bn2"))
    sd["trunk.conv.weight"] = _randn((width, width, 3, 3), g)
    sd.update(bn("trunk.bn"))
    for s in range(2):
        sd[f"upsample.{s}.conv.weight"] = _randn((4 * width, width, 3, 3), g)
        sd[f"upsample.{s}.conv.bias"] = _randn((4 * width,), g)
        sd[f"upsample.{s}.act.weight"] = torch.tensor([0.3], dtype=torch.float64)
    sd["tail.weight"] = _randn((c, width, 9, 9), g, std=0.05)
    sd["tail.bias"] = _randn((c,), g)

    net = SRResNet(scale=scale, channels=c, num_blocks=blocks, width=width).double().eval()
    net.load_state_dict(sd, strict=True)
    x = _rand(1, c, 5, 6, seed=11).double()

    def batch_norm(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"]
        )

    head = F.prelu(_conv(x, sd["head.conv.weight"], sd["head.conv.bias"]), sd["head.act.weight"])
    h = head
    for b in range(blocks):
        p = f"blocks.{b}"
        r = batch_norm(_conv(h, sd[f"{p}.conv1.weight"], None), f"{p}.bn1")
        r = F.prelu(r, sd[f"{p}.act.weight"])
        r = batch_norm(_conv(r, sd[f"{p}.conv2.weight"], None), f"{p}.bn2")
        h = h + r
    h = head + batch_norm(_conv(h, sd["trunk.conv.weight"], None), "trunk.bn")
    for s in range(2):
        p = f"upsample.{s}"
        h = _pixel_shuffle_by_hand(_conv(h, sd[f"{p}.conv.weight"], sd[f"{p}.conv.bias"]), 2)
        h = F.prelu(h, sd[f"{p}.act.weight"])
    expected = _conv(h, sd["tail.weight"], sd["tail.bias"])

    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- init, optimizer hooks


def test_srcnn_init_is_gaussian_1e3_with_zero_bias() -> None:
    torch.manual_seed(0)
    net = SRCNN()
    conv2 = net.body.conv2
    assert conv2.weight.std().item() == pytest.approx(1e-3, rel=0.05)
    assert conv2.weight.mean().abs().item() < 1e-4
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            assert torch.count_nonzero(m.bias) == 0


def test_vdsr_init_is_he_fan_out_with_zero_bias() -> None:
    torch.manual_seed(0)
    net = VDSR()
    # fan_out = 3·3·out_channels: first and middle layers sqrt(2/576), last sqrt(2/9).
    assert net.body.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.1)
    assert net.body.conv10.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.02)
    assert net.body.conv20.weight.std().item() == pytest.approx(math.sqrt(2 / 9), rel=0.1)
    assert all(torch.count_nonzero(m.bias) == 0 for m in net.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    "net, shapes",
    [
        (SRCNN(), [(1, 32, 5, 5), (1,)]),
        (SRCNN(widths=(16, 8), kernel_sizes=(9, 1, 3)), [(1, 8, 3, 3), (1,)]),
        (ESPCN(scale=3), [(9, 32, 3, 3), (9,)]),
    ],
)
def test_last_layer_parameters_are_the_final_conv(net: nn.Module, shapes) -> None:
    last = net.last_layer_parameters()
    assert [tuple(p.shape) for p in last] == shapes
    last_ids = {id(p) for p in last}
    assert last_ids <= {id(p) for p in net.parameters()}
    assert sum(p.numel() for p in net.parameters() if id(p) not in last_ids) == count_parameters(
        net
    ) - sum(p.numel() for p in last)


# --------------------------------------------------------------------------- discriminator


@pytest.mark.parametrize("crop", [96, 64, 128, 40])
def test_discriminator_one_logit_per_image(crop: int) -> None:
    net = Discriminator(base_width=8, dense_width=16)
    logits = net(_rand(3, 3, crop, crop, seed=crop))
    assert logits.shape == (3, 1)
    assert torch.isfinite(logits).all()


def test_discriminator_full_size_default_and_non_square_crop() -> None:
    net = Discriminator()
    assert net(_rand(2, 3, 96, 96)).shape == (2, 1)
    assert Discriminator(channels=1, base_width=8)(_rand(2, 1, 50, 72)).shape == (2, 1)


def test_discriminator_pool_is_identity_at_96() -> None:
    net = Discriminator(base_width=8, dense_width=16)
    seen = {}
    net.features.register_forward_hook(lambda m, i, o: seen.__setitem__("features", o))
    net.pool.register_forward_hook(lambda m, i, o: seen.__setitem__("pool", o))
    net(_rand(2, 3, 96, 96))
    assert seen["features"].shape == (2, 64, 6, 6)
    torch.testing.assert_close(seen["pool"], seen["features"])


def test_discriminator_layout() -> None:
    net = Discriminator()
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [m.stride[0] for m in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert [type(m).__name__ for m in net.features[:2]] == ["Conv2d", "LeakyReLU"]  # no BN first
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 7
    assert net.classifier.fc1.in_features == 512 * 6 * 6
    assert not any(isinstance(m, nn.Sigmoid) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in Discriminator(norm="none").modules())


# --------------------------------------------------------------------------- state dict keys


def test_state_dict_keys_are_stable() -> None:
    # These names are what docs/converting_weights.md tells converters to produce.
    assert list(SRCNN().state_dict()) == [
        f"body.conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")
    ]
    assert list(ESPCN(scale=3).state_dict()) == [
        f"body.conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")
    ]
    assert list(VDSR().state_dict()) == [
        f"body.conv{i}.{p}" for i in range(1, 21) for p in ("weight", "bias")
    ]
    keys = list(SRResNet(scale=4).state_dict())
    assert keys[:3] == ["head.conv.weight", "head.conv.bias", "head.act.weight"]
    assert "blocks.15.bn2.running_var" in keys and "trunk.bn.weight" in keys
    assert keys[-8:] == [
        "upsample.0.conv.weight",
        "upsample.0.conv.bias",
        "upsample.0.act.weight",
        "upsample.1.conv.weight",
        "upsample.1.conv.bias",
        "upsample.1.act.weight",
        "tail.weight",
        "tail.bias",
    ]


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: SRResNet(scale=5), "scale"),
        (lambda: SRResNet(norm="instance"), "norm"),
        (lambda: SRCNN(kernel_sizes=(9, 4, 5)), "kernel_sizes"),
        (lambda: SRCNN(kernel_sizes=(9, 5)), "kernel_sizes"),
        (lambda: SRCNN(padding_mode="reflect"), "padding_mode"),
        (lambda: ESPCN(scale=3, kernel_sizes=(5, 2, 3)), "kernel_sizes"),
        (lambda: ESPCN(scale=3, activation="gelu"), "activation"),
        (lambda: ESPCN(scale=0), "scale"),
        (lambda: VDSR(depth=1), "depth"),
        (lambda: Discriminator(norm="layer"), "norm"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_key(make, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        make()


def test_srresnet_bad_scale_lists_supported_scales() -> None:
    with pytest.raises(ValueError, match=r"supported scales: 2, 3, 4, 8"):
        SRResNet(scale=5)


def test_a_net_without_an_upsampling_kind_is_an_error_naming_the_fix() -> None:
    """Nothing guesses pre/post from a class name: an undeclared kind stops the build."""
    from sr_lightning.modules.base import SRModule

    with pytest.raises(ValueError, match=r'Identity declares upsampling=None.*upsampling = "pre"'):
        SRModule(net={"_target_": "torch.nn.Identity"}, optimizer=None)
    module = SRModule(net={"_target_": "sr_lightning.nets.vdsr.VDSR", "depth": 3}, optimizer=None)
    assert module.pre_upsampling and upsampling_kind(VDSR) == "pre"


# -- EDSR ---------------------------------------------------------------------------------


def test_edsr_parameter_counts_are_the_papers() -> None:
    """EDSR-baseline 1,517,571 and EDSR 43,089,923 at x4 (conv weights + biases by hand)."""
    from sr_lightning.nets.edsr import EDSR

    def by_hand(blocks: int, w: int, c: int = 3, stages: int = 2) -> int:
        conv = lambda i, o: i * o * 9 + o  # noqa: E731
        return (
            conv(c, w) + 2 * blocks * conv(w, w) + conv(w, w) + stages * conv(w, 4 * w) + conv(w, c)
        )

    assert count_parameters(EDSR(scale=4)) == by_hand(16, 64) == 1_517_571
    wide = EDSR(scale=4, num_blocks=32, width=256, res_scale=0.1)
    assert count_parameters(wide) == by_hand(32, 256) == 43_089_923


@pytest.mark.parametrize("scale", [2, 3])
def test_edsr_matches_functional_reference(scale: int) -> None:
    """Head, scaled residual blocks, long skip, sub-pixel upsampler, tail; mean shift on RGB."""
    from sr_lightning.nets.edsr import EDSR

    torch.manual_seed(0)
    net = EDSR(scale=scale, channels=3, num_blocks=2, width=8, res_scale=0.1).eval()
    x = _rand(1, 3, 6, 7)
    p = dict(net.named_parameters())
    mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)

    def conv(z, name):
        return F.conv2d(z, p[f"{name}.weight"], p[f"{name}.bias"], padding=1)

    h = conv(x - mean, "head")
    r = h
    for i in range(2):
        r = r + 0.1 * conv(F.relu(conv(r, f"body.{i}.body.0")), f"body.{i}.body.2")
    h = h + conv(r, "body_end")
    y = conv(F.pixel_shuffle(conv(h, "upsample.0"), scale), "tail") + mean
    with torch.no_grad():
        torch.testing.assert_close(net(x), y)
    assert net(x).shape == (1, 3, 6 * scale, 7 * scale)
    assert not any(k == "mean" for k in net.state_dict()), "the mean is a constant, not saved"


def test_edsr_numbers_are_table_3_of_the_paper() -> None:
    from sr_lightning.core.published import published

    got = {(r.set, r.scale): (r.psnr, r.ssim) for r in published("EDSR")}
    assert got[("Set5", 2)] == (38.11, 0.9601) and got[("Urban100", 4)] == (26.64, 0.8033)
    assert len(got) == 12
