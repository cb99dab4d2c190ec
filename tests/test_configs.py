"""Every model config and every experiment preset, found by glob: a new yaml file is covered
with no test edit (as lightning-hydra-template's ``experiment=glob(*)`` test).

Each composes, builds its module (the class its ``_target_`` names, ``method`` from the yaml,
plain-container hyperparameters, a declared upsampling kind, SR of the right size at every
scale) and trains on tiny images for a step, writing a checkpoint that records its method
and module class. Mandatory values (``???``, e.g. SRGAN's ``init_from``) are set to null and
VGG weights are not downloaded. Nets over ``LARGE_NET`` parameters train in the slow suite.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from sr_lightning.apps.train import train
from sr_lightning.core.builders import build_module
from sr_lightning.core.config import CONF_DIR
from sr_lightning.core.derived import derive, net_config
from sr_lightning.nets import count_parameters, upsampling_kind
from tests.helpers.config import model_overrides, tiny_overrides
from tests.helpers.data import write_images

# a CPU training step of a net this large (EDSR: 43M) takes half a minute: slow suite
LARGE_NET = 10_000_000


def model_yaml(name: str):
    return OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")


@functools.cache
def net_parameters(model: str) -> int:
    """Parameters of the model config's net at x4 RGB (built from its yaml alone)."""
    net = OmegaConf.to_container(model_yaml(model).net)
    return count_parameters(hydra.utils.instantiate(net_config(net, scale=4, channels=3)))


def experiment_model(experiment: str) -> str:
    """The model an experiment selects, also through an experiment it extends."""
    defaults = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").defaults
    for d in defaults:
        if isinstance(d, Mapping):
            for key, value in d.items():
                if key.endswith("/model"):
                    return value
    base = [d for d in defaults if isinstance(d, str) and d != "_self_"]
    return experiment_model(base[0])


def by_size(names, model_of=lambda name: name) -> list:
    """``names`` as pytest params, those of large nets marked ``slow``."""
    return [
        pytest.param(n, marks=pytest.mark.slow) if net_parameters(model_of(n)) > LARGE_NET else n
        for n in names
    ]


MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
# the bicubic baseline has no optimizer: nothing to train
TRAINABLE = by_size(m for m in MODELS if model_yaml(m).optimizer)

pytestmark = pytest.mark.filterwarnings(
    "ignore:VGGContentLoss uses randomly initialised:UserWarning",
    "ignore:.*does not have many workers.*",
    "ignore:.*smaller than the logging interval.*",
    "ignore:.*LeafSpec.*",
)


def offline(cfg):
    """Fill mandatory values with null and keep VGG / AlexNet weights off the network."""
    with open_dict(cfg):
        for key in list(cfg.model.keys()):
            if OmegaConf.is_missing(cfg.model, key):
                cfg.model[key] = None
        if OmegaConf.select(cfg, "loss.content") is not None:
            cfg.loss.content.pretrained = False
        for name in ("lpips", "dists"):  # perceptual metrics need ImageNet backbones
            if OmegaConf.select(cfg, f"callbacks.perceptual.{name}") is not None:
                cfg.callbacks.perceptual[name].enabled = False
    return cfg


@pytest.fixture
def smoke_data(tmp_path: Path) -> Path:
    """Two training images as large as the largest preset patch (Real-ESRNet x4: 256 px), one
    val."""
    root = tmp_path / "data"
    write_images(root / "train", [(264, 264), (260, 268)])
    write_images(root / "val", [(40, 32)], seed=1)
    return root


def smoke_overrides(data_root: Path) -> list[str]:
    return [
        *tiny_overrides(data_root),
        "data.batch_size=1",
        "data.patches_per_image=1",
        "data.val_sets=[val]",
        "data.test_sets=[val]",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.check_val_every_n_epoch=1",
        "trainer.num_sanity_val_steps=0",
        "test=false",
    ]


def check_run(cfg) -> None:
    metrics = train(cfg)
    train_values = [v for k, v in metrics.items() if k.startswith("train/")]
    assert train_values and torch.isfinite(torch.tensor(train_values)).all()
    assert torch.isfinite(torch.tensor(metrics["val/psnr"]))
    ckpt = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=True,
    )
    meta = ckpt["sr_lightning"]
    assert meta["method"] == cfg.model.method
    assert meta["module"] == cfg.model._target_
    assert ckpt["global_step"] == 1


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_builds_its_module(compose_train, model: str) -> None:
    # RGB x2 and x4: what every architecture supports (RRDBNet has no x3, SPAN no luma)
    for scale in (2, 4):
        cfg = offline(compose_train(*model_overrides(model), f"scale={scale}", "channels=3"))
        module = build_module(cfg).eval()
        assert f"{type(module).__module__}.{type(module).__qualname__}" == cfg.model._target_
        assert module.method == cfg.model.method
        assert upsampling_kind(module.net) in ("pre", "post")
        # hyperparameters are plain containers, as weights_only checkpoints require
        assert all(
            isinstance(v, dict | list | str | int | float | bool | None)
            for v in module.hparams.values()
        )
        with torch.no_grad():
            assert module(torch.rand(1, 3, 8, 8), scale).shape == (1, 3, 8 * scale, 8 * scale)


@pytest.mark.parametrize("model", TRAINABLE)
def test_every_model_config_trains_a_step(compose_train, smoke_data, model: str) -> None:
    # RGB at the default x3, or x2 for an architecture without x3 (RRDBNet)
    for scale in (3, 2):
        cfg = offline(compose_train(*model_overrides(model), f"scale={scale}", "channels=3"))
        try:
            build_module(cfg)
            break
        except ValueError:
            continue
    args = (*model_overrides(model), f"scale={scale}", "channels=3", *smoke_overrides(smoke_data))
    check_run(offline(compose_train(*args)))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(compose_train, experiment: str) -> None:
    cfg = offline(compose_train(f"experiment={experiment}"))
    assert cfg.model.method and cfg.run_name
    assert build_module(cfg).scale == cfg.scale


# each method's loss and best-checkpoint metric as its paper trains it: (pixel term, content
# term, adversarial term, monitored metric); a preset of a new method adds its line here
PAPER_RECIPES = {
    "srcnn": ("mse", None, None, "val/psnr"),
    "espcn": ("mse", None, None, "val/psnr"),
    "vdsr": ("mse", None, None, "val/psnr"),
    "srresnet": ("mse", None, None, "val/psnr"),
    "edsr": ("l1", None, None, "val/psnr"),
    "edsr_baseline": ("l1", None, None, "val/psnr"),
    "rrdbnet": ("l1", None, None, "val/psnr"),  # Real-ESRNet (realesrnet_x4)
    # VGG54 feature maps / 12.75 (MSE), 1e-3 BCE adversarial; the best checkpoint by LPIPS
    "srgan": (None, ("relu5_4", 1 / 12.75), ("vanilla", 1e-3), "val/lpips"),
}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_trains_with_its_papers_loss_and_selection(
    compose_train, experiment: str
) -> None:
    """The presets hold the pairings across groups (model, loss, callbacks), not the models."""
    cfg = compose_train(f"experiment={experiment}")
    pixel, content, adversarial, monitor = PAPER_RECIPES[cfg.model.method]
    loss = cfg.loss
    assert (loss.pixel.kind if loss.pixel.weight else None) == pixel
    if content is None:
        assert not loss.content
    else:
        assert (loss.content.layer, loss.content.weight) == (content[0], 1.0)
        assert loss.content.rescale == pytest.approx(content[1])
    if adversarial is None:
        assert not loss.adversarial
    else:
        assert (loss.adversarial.kind, loss.adversarial.weight) == adversarial
    assert cfg.callbacks.model_checkpoint.monitor == monitor
    # what the builder gives the module to train with
    assert derive(cfg).module_args()["loss"] == OmegaConf.to_container(cfg.loss, resolve=True)


@pytest.mark.parametrize("model", MODELS)
def test_a_model_config_picks_no_other_group(compose_train, model: str) -> None:
    """model=<name> alone keeps train.yaml's loss and callbacks (lightning-hydra-template's
    rule: pairings across groups are experiment presets)."""
    assert "defaults" not in model_yaml(model)
    cfg = compose_train(f"model={model}")
    assert cfg.loss == compose_train().loss
    assert cfg.callbacks == compose_train().callbacks


def test_srgan_without_an_adversarial_loss_is_refused_naming_loss_gan(compose_train) -> None:
    from sr_lightning.runtime.errors import ConfigError
    from sr_lightning.runtime.schema import check_config

    for overrides in (["model=srgan"], ["model=srgan", "loss=perceptual"]):
        with pytest.raises(
            ConfigError, match=r"model=srgan needs loss\.adversarial \(use loss=gan"
        ):
            check_config(compose_train(*overrides), "train")
    check_config(compose_train("model=srgan", "loss=gan"), "train")


@pytest.mark.parametrize("experiment", by_size(EXPERIMENTS, experiment_model))
def test_every_experiment_trains_a_step(compose_train, smoke_data, experiment: str) -> None:
    check_run(offline(compose_train(f"experiment={experiment}", *smoke_overrides(smoke_data))))


def test_the_yaml_method_names_the_run_checkpoint_report_and_export(
    compose_train, smoke_data: Path, tmp_path: Path
) -> None:
    """``method`` comes from the yaml, not the class: one module class serves two methods."""
    from sr_lightning.apps.export import export_generator
    from sr_lightning.apps.report import colour, display_name
    from sr_lightning.core.model_file import read_model_file
    from sr_lightning.core.model_files import resolve_model

    cfg = compose_train(
        "model=srresnet",
        "model.method=srresnet_nobn",
        "model.net.norm=none",
        "model.net.num_blocks=1",
        "+model.display={name: SRResNet-noBN}",
        *smoke_overrides(smoke_data),
    )
    assert cfg.run_name.startswith("srresnet_nobn_x")
    check_run(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert read_model_file(last).meta.module == "sr_lightning.modules.srresnet.SRResNetModule"
    generator = resolve_model(ckpt_path=last)
    assert generator.method == "srresnet_nobn"
    out = export_generator(generator, tmp_path / "g.safetensors", "safetensors")
    assert resolve_model(weights=out).method == "srresnet_nobn"
    # sr-report: the configs' names and colours; a method without one gets a default colour
    assert display_name("espcn") == "ESPCN"
    espcn_yaml = OmegaConf.load(CONF_DIR / "model" / "espcn.yaml")
    assert colour("espcn") == espcn_yaml.display.colour
    assert display_name("srresnet_nobn") == "srresnet_nobn"
    assert colour("srresnet_nobn").startswith("#")
