"""SRCNN, VDSR and SRResNet (and ESPCN) as LightningModules: presets, shapes, training logic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch import nn

from sr_lightning.apps.train import train
from sr_lightning.core.builders import build_datamodule, build_module
from sr_lightning.core.schedules import BudgetLR
from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.degradation import degrade_train
from sr_lightning.data.imresize import imresize
from sr_lightning.modules.srcnn import SRCNNModule
from sr_lightning.modules.srresnet import SRResNetModule
from sr_lightning.modules.vdsr import VDSRModule, clip_to_lr_bounds
from sr_lightning.nets import SRCNN, VDSR, SRResNet
from tests.helpers.config import tiny_overrides

# Small versions of the nets these method-specific tests train, so a step takes milliseconds.
SMALL_NETS = {
    "srcnn": [],
    "vdsr": ["model.net.depth=6", "model.net.width=16"],
    "srresnet": ["model.net.num_blocks=2", "model.net.width=16"],
    "espcn": [],
}


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- presets


def test_srcnn_x3_preset_is_the_paper(compose_train, tmp_path: Path) -> None:
    cfg = compose_train("experiment=srcnn_x3", f"paths.data_dir={tmp_path}")
    module, data = build_module(cfg), build_datamodule(cfg)
    assert isinstance(module, SRCNNModule) and isinstance(module.net, SRCNN)
    assert (module.scale, module.channels, data.channels) == (3, 1, 1)
    assert data.patch_size == 33 and data.train_specs == ["T91"] and data.val_specs == ["Set5"]
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD)
    # first two layers at 1e-4, the reconstruction layer at 1e-5 (TPAMI'16)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-5])
    assert {id(p) for p in opt.param_groups[1]["params"]} == {
        id(p) for p in module.net.body.conv3.parameters()
    }
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)
    assert module.border == (9 - 1 + 5 - 1 + 5 - 1) // 2  # 17x17 loss window on 33x33
    assert cfg.run_name == "srcnn_x3"


def test_srcnn_cpu_recipe_is_adam_9_1_5_over_the_budget(compose_train, tmp_path: Path) -> None:
    cfg = compose_train("experiment=srcnn_x3_cpu", f"paths.data_dir={tmp_path}")
    module, data = build_module(cfg), build_datamodule(cfg)
    assert isinstance(module.net, SRCNN) and data.patch_size == 33 and data.batch_size == 16
    assert [c.kernel_size[0] for c in module.net.modules() if isinstance(c, nn.Conv2d)] == [9, 1, 5]
    assert module.net.init == "he"
    # the loss sees the whole patch: outputs near an image edge are trained too
    sr, hr = torch.zeros(2, 1, 33, 33), torch.ones(2, 1, 33, 33)
    assert module.loss_region(sr, hr)[0].shape == sr.shape and module.border == 0
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    # the recipe's `momentum: null` drops the base preset's SGD key instead of passing it
    assert isinstance(opt, torch.optim.Adam) and "momentum" not in opt.defaults
    assert isinstance(sched, BudgetLR) and conf["lr_scheduler"]["interval"] == "step"
    assert cfg.model.loss_reduction == "mean" and cfg.trainer.max_epochs == -1


@pytest.mark.parametrize(("scale", "patch"), [(2, 34), (4, 36)])
def test_srcnn_cpu_recipe_at_x2_and_x4_is_the_x3_recipe_at_that_scale(
    compose_train, tmp_path: Path, scale: int, patch: int
) -> None:
    cfg = compose_train(f"experiment=srcnn_x{scale}_cpu", f"paths.data_dir={tmp_path}")
    x3 = compose_train("experiment=srcnn_x3_cpu", f"paths.data_dir={tmp_path}")
    assert cfg.scale == scale and cfg.run_name == f"srcnn_x{scale}_cpu"
    assert cfg.model == x3.model and cfg.data == x3.data
    module, data = build_module(cfg), build_datamodule(cfg)
    # the paper's 33 HR pixels rounded up to a whole number of LR pixels
    assert module.scale == scale and data.patch_size == patch and patch % scale == 0


def test_vdsr_cpu_recipe_is_adam_on_a_mean_loss_without_clipping(
    compose_train, tmp_path: Path
) -> None:
    cfg = compose_train("experiment=vdsr_cpu", f"paths.data_dir={tmp_path}")
    paper = compose_train("experiment=vdsr", f"paths.data_dir={tmp_path}")
    module, data = build_module(cfg), build_datamodule(cfg)
    assert cfg.model.net == paper.model.net and cfg.data.scales == paper.data.scales == [2, 3, 4]
    assert data.batch_size == 16
    assert module.clip_theta is None and cfg.model.loss_reduction == "mean"
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.Adam) and "momentum" not in opt.defaults
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 0
    assert isinstance(sched, BudgetLR) and cfg.model.scheduler.milestones == [0.8]
    assert cfg.model.channels_last and cfg.run_name == "vdsr_cpu"


CPU_RECIPES = ["espcn_x2", "espcn_x3", "espcn_x4", "espcn_x3_bd", "espcn_x3_dn",
               "srcnn_x2_cpu", "srcnn_x3_cpu", "srcnn_x4_cpu", "vdsr_cpu"]  # fmt: skip
PAPER_PRESETS = ["srcnn_x3", "vdsr", "srresnet_x4", "edsr_baseline_x2"]


@pytest.mark.parametrize("experiment", CPU_RECIPES + PAPER_PRESETS)
def test_cpu_recipes_take_bf16_where_the_hardware_has_it_and_paper_presets_stay_fp32(
    compose_train, tmp_path: Path, experiment: str
) -> None:
    """bf16 paid in every CPU recipe's time-to-quality runs (docs/benchmarks.md); the paper
    presets keep the papers' fp32 arithmetic."""
    cfg = compose_train(f"experiment={experiment}", f"paths.data_dir={tmp_path}")
    assert cfg.trainer.precision == ("auto" if experiment in CPU_RECIPES else "32-true")


def test_vdsr_preset_is_the_paper(compose_train, tmp_path: Path) -> None:
    cfg = compose_train("experiment=vdsr", f"paths.data_dir={tmp_path}")
    module, data = build_module(cfg), build_datamodule(cfg)
    assert isinstance(module, VDSRModule) and isinstance(module.net, VDSR)
    assert data.scales == [2, 3, 4] and data.scale == module.scale == 3
    assert data.train_specs == ["T91", "BSD200"] and data.batch_size == 64
    assert all(data.patch_size % s == 0 for s in data.scales)
    assert module.train_crop == 41 <= data.patch_size
    assert data.augment == {"hflip": True, "vflip": True, "rot90": True}
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-4)
    # the paper's /10 every 20 of 80 epochs, as fractions of the budget
    assert isinstance(sched, BudgetLR) and conf["lr_scheduler"]["interval"] == "step"
    assert (sched.kind, sched.milestones, sched.gamma) == ("step", [0.25, 0.5, 0.75], 0.1)
    assert module.clip_theta > 0 and cfg.trainer.max_epochs == 80


def test_srresnet_x4_preset_is_the_paper(compose_train, tmp_path: Path) -> None:
    cfg = compose_train("experiment=srresnet_x4", f"paths.data_dir={tmp_path}")
    module, data = build_module(cfg), build_datamodule(cfg)
    assert isinstance(module, SRResNetModule) and isinstance(module.net, SRResNet)
    assert (module.scale, module.channels, data.channels) == (4, 3, 3)
    assert (data.patch_size, data.batch_size) == (96, 16)
    assert data.train_specs == ["DIV2K_train_HR"]
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-4
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in module.net.modules())
    norm_free = build_module(compose_train("experiment=srresnet_x4", "model.net.norm=none"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in norm_free.net.modules())


# Every model config's module, its method and output shapes: tests/test_configs.py (by glob).


def test_pre_upsampling_module_uses_the_given_scale(compose_train) -> None:
    """One VDSR evaluates at any scale: forward(lr, s) is the net on the bicubic ×s input."""
    module = build_module(compose_train("model=vdsr", "scale=3", *SMALL_NETS["vdsr"]))
    module.eval()
    lr = _rand(1, 1, 6, 8)
    with torch.no_grad():
        for s in (2, 3, 4):
            assert module(lr, s).shape == (1, 1, 6 * s, 8 * s)


# --------------------------------------------------------------------------- losses


def test_srcnn_loss_is_the_papers_sum_over_the_padding_free_centre(compose_train) -> None:
    module = build_module(compose_train("model=srcnn"))
    sr, hr = _rand(4, 1, 33, 33, seed=1), _rand(4, 1, 33, 33, seed=2)
    b = 8  # (9 - 1 + 5 - 1 + 5 - 1) / 2
    expected = ((sr - hr)[..., b:-b, b:-b] ** 2).sum() / 4  # TPAMI eq. 4 on 17x17 labels
    loss, terms = module.compute_loss(sr, hr)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(terms["pixel"], expected)
    # outputs next to the border see padding; they must not move the loss
    sr_border = sr.clone()
    sr_border[..., :b, :] = 5.0
    sr_border[..., :, -b:] = -5.0
    torch.testing.assert_close(module.compute_loss(sr_border, hr)[0], expected)
    with pytest.raises(ValueError, match=r"model\.patch_hr"):
        module.compute_loss(sr[..., :16, :16], hr[..., :16, :16])


def test_a_loss_with_a_target_is_the_users_module_called_on_sr_and_hr(compose_train) -> None:
    """loss._target_ builds the user's nn.Module (here torch's SmoothL1Loss), which replaces
    the built-in terms; the schema lets its own keys through to it."""
    from sr_lightning.runtime.schema import check_config

    user = "+loss={_target_: torch.nn.SmoothL1Loss, beta: 0.25}"
    cfg = compose_train("model=espcn", "~loss", user)
    check_config(cfg, "train")
    module = build_module(cfg)
    assert isinstance(module.pixel_loss, nn.SmoothL1Loss) and module.pixel_loss.beta == 0.25
    assert module.content_loss is None
    sr, hr = _rand(2, 1, 12, 12, seed=1), _rand(2, 1, 12, 12, seed=2)
    loss, terms = module.compute_loss(sr, hr)
    torch.testing.assert_close(loss, nn.functional.smooth_l1_loss(sr, hr, beta=0.25))
    assert list(terms) == ["pixel"]
    # a checkpoint's hyperparameters keep the config, so the same loss is rebuilt
    assert module.hparams.loss == {"_target_": "torch.nn.SmoothL1Loss", "beta": 0.25}
    not_a_module = compose_train("model=espcn", "~loss", "+loss={_target_: builtins.dict}")
    with pytest.raises(TypeError, match=r"loss\._target_=builtins\.dict built a dict"):
        build_module(not_a_module)


def test_vdsr_loss_is_half_the_patch_sum_on_the_central_crop(compose_train) -> None:
    module = build_module(compose_train("model=vdsr", *SMALL_NETS["vdsr"]))
    sr, hr = _rand(4, 1, 41, 41, seed=1), _rand(4, 1, 41, 41, seed=2)
    torch.testing.assert_close(module.compute_loss(sr, hr)[0], 0.5 * ((sr - hr) ** 2).sum() / 4)

    hr48 = _rand(3, 1, 48, 48, seed=3)
    batch = {"hr": hr48, "lr": degrade_train(hr48, 4), "scale": 4}
    sr_crop, hr_crop = module.training_pair(batch)
    assert sr_crop.shape == hr_crop.shape == (3, 1, 41, 41)
    torch.testing.assert_close(hr_crop, hr48[..., 3:44, 3:44])
    module.train_crop = 49
    with pytest.raises(ValueError, match="train_crop"):
        module.training_pair(batch)


# --------------------------------------------------------------------------- VDSR clipping


def test_clip_bound_is_theta_over_each_groups_lr() -> None:
    a, b = torch.nn.Parameter(torch.zeros(200)), torch.nn.Parameter(torch.zeros(200))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1)
    grad = torch.linspace(-3, 3, 200)
    theta = 0.05
    for lr_a in (0.1, 0.02):  # the bound widens when the schedule lowers the lr
        opt.param_groups[0]["lr"] = lr_a
        a.grad, b.grad = grad.clone(), grad.clone()
        clip_to_lr_bounds(opt, theta)
        torch.testing.assert_close(a.grad, grad.clamp(-theta / lr_a, theta / lr_a))
        torch.testing.assert_close(b.grad, grad.clamp(-5.0, 5.0))  # 0.05 / 0.01
        assert a.grad.abs().max() == pytest.approx(theta / lr_a)


class GradRecorder(Callback):
    """After each optimizer step (grads are kept until the next zero_grad): max |grad|, lr."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        grads = [p.grad.abs().max() for p in pl_module.parameters() if p.grad is not None]
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.steps.append((float(torch.stack(grads).max()), lr))


def test_vdsr_clipping_in_training_follows_the_scheduled_lr(compose_train, tiny_data) -> None:
    theta = 1e-4
    cfg = compose_train(
        "model=vdsr",
        *tiny_overrides(tiny_data),
        *SMALL_NETS["vdsr"],
        "scale=2",
        f"model.clip_theta={theta}",
        # halve the lr after every step of the 5, so each step has its own bound
        "model.scheduler.milestones=[0.2,0.4,0.6,0.8]",
        "model.scheduler.gamma=0.5",
    )
    recorder = GradRecorder()
    lrs = []

    class LrBeforeStep(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            lrs.append(optimizer.param_groups[0]["lr"])

    trainer = Trainer(
        max_steps=5,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder, LrBeforeStep()],
    )
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    assert lrs == pytest.approx([0.1 * 0.5**i for i in range(5)])
    for (max_grad, _), lr in zip(recorder.steps, lrs, strict=True):
        # with θ this small, gradients reach the bound: the clip is active and exactly θ/γ
        assert max_grad == pytest.approx(theta / lr, rel=1e-6)


# --------------------------------------------------------------------------- multi-scale


def test_every_multiscale_batch_carries_one_scale(tiny_data: Path, compose_train) -> None:
    data = SRDataModule(
        data_dir=str(tiny_data),
        train_sets=["train"],
        scales=[2, 3, 4],
        patch_size=24,
        batch_size=4,
        patches_per_image=8,
    )
    data.setup("fit")
    module = build_module(compose_train("model=vdsr", *SMALL_NETS["vdsr"], "model.train_crop=21"))
    # last layer zeroed: VDSR is then the identity on its input, the bicubic upscale of the LR
    last = module.net.body[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    torch.manual_seed(0)
    seen = set()
    for _ in range(3):
        for hr_uint8 in data.train_dataloader():
            batch = data.on_after_batch_transfer(hr_uint8, 0)
            s = batch["scale"]
            seen.add(s)
            assert batch["hr"].shape[-2:] == (24, 24)
            assert batch["lr"].shape[-2:] == (24 // s, 24 // s)
            # every sample's LR is its own HR degraded at the batch's scale
            torch.testing.assert_close(batch["lr"], degrade_train(batch["hr"], s))
            with torch.no_grad():
                sr, hr = module.training_pair(batch)
            assert sr.shape == hr.shape == (4, 1, 21, 21)
            # the module upsamples by the batch's scale, then takes the central 21 of 24
            torch.testing.assert_close(sr, imresize(batch["lr"], float(s))[..., 1:22, 1:22])
    assert seen == {2, 3, 4}


# --------------------------------------------------------------------------- training


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


TRAINING = {
    # method: (overrides, steps); each uses its model yaml's optimizer and training logic
    "srcnn": (["scale=3"], 30),
    "vdsr": (["scale=2", "model.patch_hr=24", "model.train_crop=21"], 15),
    "srresnet": (["scale=2", "model.patch_hr=24"], 20),
    "espcn": (["scale=2"], 100),  # Adam 1e-3: slower start than the others
}


@pytest.mark.parametrize("method", list(TRAINING))
def test_training_lowers_the_loss_on_a_fixed_batch(compose_train, tiny_data, method) -> None:
    overrides, steps = TRAINING[method]
    cfg = compose_train(
        f"model={method}",
        *tiny_overrides(tiny_data),
        *SMALL_NETS[method],
        *overrides,
        "+data.random_crops=false",
        "data.augment={hflip: false, vflip: false, rot90: false}",
    )
    torch.manual_seed(0)
    recorder = LossRecorder()
    trainer = Trainer(
        max_steps=steps,
        overfit_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    losses = recorder.losses
    assert len(losses) == steps and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, f"{method}: loss {first:.4g} -> {last:.4g}"


def test_vdsr_multiscale_run_validates_checkpoints_and_reloads(compose_train, tiny_data) -> None:
    """The whole app: multi-scale VDSR trains, validates at `scale`, and its checkpoint
    (plain containers only) rebuilds the same module with its clipping settings."""
    cfg = compose_train(
        "experiment=vdsr",
        *tiny_overrides(tiny_data),
        *SMALL_NETS["vdsr"],
        "model.patch_hr=24",
        "model.train_crop=21",
        "data.batch_size=4",
        "trainer.max_epochs=1",
    )
    metrics = train(cfg)
    assert metrics["val/psnr"] > 0 and "val/psnr_bicubic" in metrics
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True, map_location="cpu")
    assert ckpt["sr_lightning"]["method"] == "vdsr"
    # one multi-scale model serves every training scale: evaluation tools read them here
    assert ckpt["sr_lightning"]["scales"] == [2, 3, 4]
    module = VDSRModule.load_from_checkpoint(last, map_location="cpu")
    assert (module.clip_theta, module.train_crop, module.scale) == (
        cfg.model.clip_theta,
        21,
        3,
    )


def test_init_from_copies_the_matching_net_tensors_and_keeps_the_rest(
    compose_train, tmp_path: Path
) -> None:
    """x3 from a x2 model (EDSR's recipe): all but the scale-specific upsampler is copied."""
    x2 = build_module(compose_train("model=espcn", "scale=2"))
    path = tmp_path / "x2.ckpt"
    state = {f"net.{k}": v for k, v in x2.net.state_dict().items()}
    hparams = {"net": dict(x2.hparams.net)}
    meta = {"channels": 1, "scale": 2}
    torch.save({"state_dict": state, "sr_lightning": meta, "hyper_parameters": hparams}, path)
    x3 = build_module(compose_train("model=espcn", "scale=3", f"+model.init_from={path}"))
    before = {k: v.clone() for k, v in x3.net.state_dict().items()}
    x3.init_net_from(str(path))
    after, given = x3.net.state_dict(), x2.net.state_dict()
    copied = [k for k in after if given[k].shape == after[k].shape]
    assert copied and len(copied) < len(after)
    for k in after:
        expected = given[k] if k in copied else before[k]
        assert torch.equal(after[k], expected), k
    with pytest.raises(
        ValueError, match=r"holds a sr_lightning\.nets\.espcn\.ESPCN net, this run builds .*SRCNN"
    ):
        build_module(compose_train("model=srcnn")).init_net_from(str(path))
    with pytest.raises(ValueError, match=r"channels 1 \(file\) vs 3 \(this run\)"):
        build_module(compose_train("model=espcn", "channels=3")).init_net_from(str(path))
