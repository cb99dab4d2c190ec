"""The values the parts take from the top of the config (sr_lightning/core/derived.py): the HR
patch, the module's and the nets' scale / channels / loss, the moved keys."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from sr_lightning.common.errors import ConfigError
from sr_lightning.core.builders import build_datamodule, build_module
from sr_lightning.core.derived import derive, hr_patch, net_config
from sr_lightning.runtime.schema import check_config


def smallest_multiple_at_least(side: int, scales: list[int]) -> int:
    """A second implementation: count up until every scale divides it."""
    n = side
    while any(n % s for s in scales):
        n += 1
    return n


@pytest.mark.parametrize(
    ("scale", "scales", "lr", "hr"),
    [
        (3, None, 17, None),  # ESPCN: 17 LR pixels
        (4, None, 48, None),  # EDSR
        (2, None, None, 33),  # SRCNN's 33 HR pixels
        (3, None, None, 33),
        (4, None, None, 33),
        (4, None, None, 96),  # SRResNet
        (3, [2, 3, 4], None, 48),  # VDSR's multi-scale 48
        (3, [2, 3, 4], None, 50),
        (3, [2, 3, 4], 17, None),
    ],
)
def test_the_hr_patch_is_a_whole_number_of_lr_pixels_at_every_scale(scale, scales, lr, hr):
    side = lr * scale if lr is not None else hr
    expected = smallest_multiple_at_least(side, scales or [scale])
    assert hr_patch(scale, scales, lr, hr) == expected


def test_srcnns_patch_is_the_papers_33_rounded_up():
    # the values the yaml's comment promises (34 at x2, 33 at x3, 36 at x4)
    assert [hr_patch(s, None, None, 33) for s in (2, 3, 4)] == [34, 33, 36]
    assert math.lcm(2, 3, 4) == 12 and hr_patch(3, [2, 3, 4], None, 50) == 60


def test_a_patch_given_both_ways_is_refused_and_none_is_none():
    with pytest.raises(ValueError, match=r"model\.patch_lr=17 and model\.patch_hr=51 both"):
        hr_patch(3, None, 17, 51)
    assert hr_patch(3) is None


def test_the_net_gets_the_scale_and_channels_its_class_names():
    espcn = net_config({"_target_": "sr_lightning.nets.espcn.ESPCN"}, scale=4, channels=3)
    srcnn = net_config({"_target_": "sr_lightning.nets.srcnn.SRCNN"}, scale=4, channels=3)
    assert (espcn["scale"], espcn["channels"]) == (4, 3)
    assert "scale" not in srcnn and srcnn["channels"] == 3  # pre-upsampling: no scale


def test_a_spandrel_net_gets_them_under_its_architectures_names():
    from sr_lightning.nets.zoo import SpandrelNet

    small = {"num_filters": 8, "num_blocks": 1}
    spec = net_config(
        {
            "_target_": "sr_lightning.nets.zoo.SpandrelNet",
            "arch": "ESRGAN",
            "hyperparameters": small,
        },
        scale=2,
        channels=1,
    )
    net = SpandrelNet(**{k: v for k, v in spec.items() if k != "_target_"})
    assert (net.scale, net.in_channels) == (2, 1)  # what spandrel detects from its weights
    with torch.no_grad():
        assert net(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)
    # a value the hyperparameters give stays: SPAN is RGB only
    span = SpandrelNet("SPAN", {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 8}, 4, 1)
    assert (span.scale, span.in_channels) == (4, 3)


def test_the_module_and_its_net_run_at_the_top_level_scale(compose_train):
    cfg = compose_train("model=espcn", "scale=2", "channels=3", "loss=l1")
    module = build_module(cfg)
    assert (module.scale, module.channels) == (2, 3)
    with torch.no_grad():
        assert module(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    # the checkpoint's net spec is complete: tools rebuild the net without the run's config
    assert (module.hparams.net["scale"], module.hparams.net["channels"]) == (2, 3)
    assert module.hparams.loss == OmegaConf.to_container(cfg.loss)  # the loss group's
    assert module.hparams.loss["pixel"]["kind"] == "l1"


def test_vdsr_keeps_the_data_scales_and_the_data_module_cuts_the_models_patch(compose_train):
    cfg = compose_train("experiment=vdsr", "model.net.depth=3", "model.net.width=8")
    assert build_module(cfg).scales == [2, 3, 4]
    data = build_datamodule(cfg)
    assert (data.scale, data.channels, data.patch_size, data.scales) == (3, 1, 48, [2, 3, 4])
    assert derive(compose_train("model=espcn", "scale=4")).patch_size == 68


@pytest.mark.parametrize(
    ("override", "moved_to"),
    [
        ("+model.patch_size=48", "model.patch_lr (LR pixels) or model.patch_hr"),
        ("+model.net.scale=4", "the top-level scale"),
        ("+data.scale=4", "the top-level scale"),
        ("+data.patch_size=48", "model.patch_lr (LR pixels) or model.patch_hr"),
        ("+model.channels=3", "the top-level channels"),
    ],
)
def test_a_key_that_held_a_copy_says_where_the_value_comes_from(compose_train, override, moved_to):
    key = override.lstrip("+").split("=")[0]
    with pytest.raises(ConfigError) as info:
        check_config(compose_train(override), "train")
    assert str(info.value).startswith(f"{key}: moved; ") and moved_to in str(info.value)
