"""SRGAN: phases, frozen VGG, loss weights, batch-counted steps, resume, init_from, EMA, DDP.

Tiny nets (generator 2 blocks × 16, discriminator 8 / 32), 24-pixel ×2 crops, random VGG.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import hydra
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from sr_lightning.core.builders import build_datamodule, build_module
from sr_lightning.core.derived import derive
from sr_lightning.core.model_files import resolve_model
from sr_lightning.modules.srgan import SRGANModule
from sr_lightning.runtime.builders import build_callbacks, build_loggers
from sr_lightning.runtime.errors import ConfigError
from sr_lightning.runtime.schema import check_config
from tests.helpers.config import TINY_SRGAN, tiny_overrides

REPO = Path(__file__).resolve().parents[1]

TINY_GAN = [*TINY_SRGAN, "scale=2", "trainer.log_every_n_steps=1"]

pytestmark = pytest.mark.filterwarnings(
    "ignore:VGGContentLoss uses randomly initialised:UserWarning",
    "ignore:.*does not have many workers.*",
    "ignore:.*smaller than the logging interval.*",
    "ignore:.*could not find the monitored key.*",
    "ignore:Using ModelCheckpoint with manual optimization:UserWarning",
)


@pytest.fixture
def gan_cfg(tiny_data, compose_train):
    """A composed tiny SRGAN config; extra overrides as arguments."""

    def _cfg(*overrides: str):
        return compose_train(*tiny_overrides(tiny_data), *TINY_GAN, *overrides)

    return _cfg


def fit(cfg, callbacks=(), ckpt_path=None, module=None) -> tuple[Trainer, SRGANModule]:
    module = module or build_module(cfg)
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[*build_callbacks(cfg.callbacks), *callbacks],
        logger=build_loggers(cfg.logger),
    )
    trainer.fit(module, datamodule=build_datamodule(cfg), ckpt_path=ckpt_path)
    return trainer, module


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, after: dict, params_of: torch.nn.Module) -> list[str]:
    """Names of ``params_of``'s parameters that differ between two state snapshots."""
    names = [n for n, _ in params_of.named_parameters()]
    return [n for n in names if not torch.equal(before[n], after[n])]


def adam_steps(optimizer) -> set[int]:
    return {int(s["step"]) for s in optimizer.state.values()}


class CountBatches(Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args) -> None:
        self.batches += 1


# -- one network per phase ------------------------------------------------------------------


def grads(net: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in net.named_parameters()}


def same_grads(a: dict, b: dict) -> bool:
    return all(
        (a[k] is None and b[k] is None)
        or (a[k] is not None and b[k] is not None and torch.equal(a[k], b[k]))
        for k in a
    )


def wrap(module: SRGANModule, name: str, record: Callable) -> None:
    """Replace the bound phase method ``name`` by one that records states around it."""
    original = getattr(module, name)

    def state() -> tuple:
        g, d = module.net, module.discriminator
        return snapshot(g), snapshot(d), grads(g), grads(d)

    def wrapped(*args, **kwargs):
        before = state()
        original(*args, **kwargs)
        record(name, before, state())

    object.__setattr__(module, name, wrapped)


def test_each_phase_updates_only_its_own_network(gan_cfg):
    cfg = gan_cfg("trainer.max_steps=3")
    module = build_module(cfg)
    seen = []
    wrap(module, "discriminator_phase", lambda *r: seen.append(r))
    wrap(module, "generator_phase", lambda *r: seen.append(r))
    fit(cfg, module=module)

    assert [name for name, *_ in seen] == ["discriminator_phase", "generator_phase"] * 3
    for name, (g0, d0, g_grad0, d_grad0), (g1, d1, g_grad1, d_grad1) in seen:
        g_changed = changed(g0, g1, module.net)
        d_changed = changed(d0, d1, module.discriminator)
        if name == "discriminator_phase":
            assert d_changed and not g_changed, (name, g_changed)
            # G is not even run in the D phase: its BatchNorm statistics stay put too
            assert all(torch.equal(g0[k], g1[k]) for k in g0)
            # no gradient of D's loss reaches G (sr is detached)
            assert same_grads(g_grad0, g_grad1)
        else:
            assert g_changed and not d_changed, (name, d_changed)
            # D is frozen in the G phase: G's loss leaves no gradient in D
            assert same_grads(d_grad0, d_grad1)


def grad_norm(net: torch.nn.Module) -> float:
    return (
        torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]).norm().item()
    )


@pytest.mark.parametrize("clip", [False, True])
def test_each_network_has_its_own_gradient_clipping(gan_cfg, clip):
    overrides = ["model.grad_clip.generator=0.01", "model.grad_clip.discriminator=0.02"]
    cfg = gan_cfg("trainer.max_steps=2", "loss.adversarial.weight=1", *(overrides if clip else []))
    module = build_module(cfg)
    norms = {}
    for name, net in (("discriminator_phase", "discriminator"), ("generator_phase", "net")):
        phase = getattr(module, name)

        def wrapped(*args, _phase=phase, _net=net, **kwargs):
            _phase(*args, **kwargs)  # the gradients stay in .grad until the next zero_grad
            norms.setdefault(_net, []).append(grad_norm(getattr(module, _net)))

        object.__setattr__(module, name, wrapped)
    fit(cfg, module=module)
    if clip:
        assert norms["net"] == pytest.approx([0.01, 0.01], rel=1e-4)
        assert norms["discriminator"] == pytest.approx([0.02, 0.02], rel=1e-4)
    else:  # without clipping the same runs have larger gradients, so the clip did bite
        assert min(norms["net"]) > 0.01 and min(norms["discriminator"]) > 0.02


def test_clipping_is_refused_under_fp16_loss_scaling(gan_cfg):
    module = build_module(gan_cfg("model.grad_clip.generator=1.0"))
    scaled = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=torch.amp.GradScaler("cpu")))
    object.__setattr__(module, "_trainer", scaled)
    with pytest.raises(ValueError, match="16-mixed would clip loss-scaled"):
        module.check_clipping_precision()
    object.__setattr__(module, "_trainer", SimpleNamespace(precision_plugin=SimpleNamespace()))
    module.check_clipping_precision()  # bf16 / fp32: no scaler, clipping is fine


# -- the VGG of the content loss --------------------------------------------------------------


def test_vgg_never_changes_gets_no_grads_and_stays_out_of_optimizers_and_checkpoints(
    gan_cfg, tmp_path
):
    cfg = gan_cfg("trainer.max_steps=3")
    module = build_module(cfg)
    vgg = module.content_loss.vgg
    before = snapshot(vgg)
    trainer, _ = fit(cfg, module=module)

    assert all(torch.equal(before[k], v) for k, v in vgg.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in vgg.parameters())
    assert not vgg.training
    vgg_ids = {id(p) for p in vgg.parameters()}
    for opt in trainer.optimizers:
        assert not vgg_ids & {id(p) for g in opt.param_groups for p in g["params"]}
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not [k for k in ckpt["state_dict"] if "vgg" in k or k.startswith("content_loss")]


# -- loss weights ------------------------------------------------------------------------------

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def test_configured_loss_weights_are_what_is_applied(gan_cfg):
    cfg = gan_cfg(
        "loss.content.weight=0.5",
        "loss.adversarial.weight=0.01",
        "loss.adversarial.real_label=0.9",
        "loss.pixel.kind=l1",
        "loss.pixel.weight=0.25",
    )
    module = build_module(cfg).eval()
    g = torch.Generator().manual_seed(3)
    sr, hr = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)

    with torch.no_grad():
        total, terms = module.generator_objective(sr, hr)
        d_total, d_terms = module.discriminator_objective(hr, sr)
        # independent references: VGG features by hand, BCE from its formula
        vgg = module.content_loss.vgg
        phi_sr = vgg((sr - IMAGENET_MEAN) / IMAGENET_STD) / 12.75
        phi_hr = vgg((hr - IMAGENET_MEAN) / IMAGENET_STD) / 12.75
        content = ((phi_sr - phi_hr) ** 2).mean()
        fake, real = module.discriminator(sr), module.discriminator(hr)
        adversarial = -torch.log(torch.sigmoid(fake)).mean()
        pixel = (sr - hr).abs().mean()
        d_real = -(0.9 * torch.log(torch.sigmoid(real)) + 0.1 * torch.log(1 - torch.sigmoid(real)))
        d_fake = -torch.log(1 - torch.sigmoid(fake))

    assert terms["g_content"] == pytest.approx(content.item(), rel=1e-5)
    assert terms["g_adv"] == pytest.approx(adversarial.item(), rel=1e-5)
    assert terms["g_pixel"] == pytest.approx(pixel.item(), rel=1e-6)
    assert total == pytest.approx(
        (0.5 * content + 0.01 * adversarial + 0.25 * pixel).item(), rel=1e-5
    )
    assert d_total == pytest.approx((d_real.mean() + d_fake.mean()).item(), rel=1e-5)
    assert d_terms["d_real"] == pytest.approx(torch.sigmoid(real).mean().item(), rel=1e-6)
    assert d_terms["d_fake"] == pytest.approx(torch.sigmoid(fake).mean().item(), rel=1e-6)


def test_non_finite_loss_names_the_term_and_the_step(gan_cfg):
    cfg = gan_cfg("trainer.max_steps=3")
    module = build_module(cfg)
    module.content_loss.forward = lambda sr, hr: torch.tensor(float("nan"))
    with pytest.raises(FloatingPointError, match=r"global step 0 \(term: g_content\)"):
        fit(cfg, module=module)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["loss=perceptual"], r"model=srgan needs loss\.adversarial \(use loss=gan"),
        (["+loss.adversarial.wieght=1"], r"did you mean loss\.adversarial\.weight\?"),
        (["loss.adversarial.real_label=1.1"], r"real_label=1\.1: must be a number > 0 and <= 1"),
        (["model.grad_clip.algorithm=max"], r"grad_clip\.algorithm=max: must be norm or value"),
        (["+model.grad_clip.gen=1"], r"model\.grad_clip\.gen: no such key"),
        (["model.d_steps_per_g=0"], r"d_steps_per_g=0: must be an integer >= 1"),
        (["model.d_warmup_steps=-1"], r"d_warmup_steps=-1: must be an integer >= 0"),
        (["model.ema_decay=1.5"], r"ema_decay=1\.5: must be a number >= 0 and < 1"),
        (["+model.loss_reduction=sum"], r"model\.loss_reduction=sum: must be mean"),
        (["model.scheduler_interval=batch"], r"scheduler_interval=batch: must be step or epoch"),
    ],
)
def test_bad_srgan_settings_fail_naming_the_key(gan_cfg, overrides, message):
    """The schema refuses them at start-up, before anything is built."""
    with pytest.raises(ConfigError, match=message):
        check_config(gan_cfg(*overrides), "train")


def test_what_the_schema_cannot_see_is_checked_when_the_module_is_built(gan_cfg):
    with pytest.raises(ValueError, match=r"needs loss\.adversarial \(use loss=gan\)"):
        build_module(gan_cfg("loss=perceptual"))  # built without the schema
    with pytest.raises(ValueError, match=r"scheduler_monitor is not supported by SRGAN"):
        build_module(gan_cfg("+model.scheduler_monitor=val/psnr"))


# -- steps are batches -------------------------------------------------------------------------


def test_max_steps_checkpoints_and_log_steps_count_batches(gan_cfg, tmp_path):
    cfg = gan_cfg("trainer.max_steps=5", "model.d_warmup_steps=1", "model.d_steps_per_g=2")
    every_2 = ModelCheckpoint(
        dirpath=tmp_path / "every2", filename="{step}", every_n_train_steps=2, save_top_k=-1
    )
    counter = CountBatches()
    trainer, module = fit(cfg, callbacks=[every_2, counter])

    assert counter.batches == 5 and trainer.global_step == 5
    opt_g, opt_d = trainer.optimizers
    assert adam_steps(opt_d) == {5}  # D steps on every batch
    assert adam_steps(opt_g) == {2}  # G on batches 1 and 3: after 1 warm-up batch, 1 in 2
    assert int(module.ema.n_averaged) == 2
    assert [s.last_epoch for s in module.lr_schedulers()] == [5, 5]
    assert sorted(p.name for p in (tmp_path / "every2").iterdir()) == ["step=2.ckpt", "step=4.ckpt"]

    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    d_steps = [int(r["step"]) for r in rows if r.get("train/d_loss")]
    g_steps = [int(r["step"]) for r in rows if r.get("train/g_loss")]
    assert d_steps == [0, 1, 2, 3, 4] and g_steps == [1, 3]


# -- resume ------------------------------------------------------------------------------------


class CheckRestored(Callback):
    """At the start of the resumed run, compare the live state with the checkpoint file."""

    def __init__(self, ckpt: dict) -> None:
        self.ckpt = ckpt
        self.checked = False

    def on_train_start(self, trainer, module) -> None:
        ckpt = self.ckpt
        assert trainer.global_step == ckpt["global_step"] == 3
        for opt, saved in zip(trainer.optimizers, ckpt["optimizer_states"], strict=True):
            live = opt.state_dict()["state"]
            assert live.keys() == saved["state"].keys()
            for i, state in saved["state"].items():
                assert all(torch.equal(live[i][k], v) for k, v in state.items())
        saved_sched = [s["last_epoch"] for s in ckpt["lr_schedulers"]]
        assert [s.last_epoch for s in module.lr_schedulers()] == saved_sched == [3, 3]
        ema = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("ema.")}
        live_ema = {f"ema.{k}": v for k, v in module.ema.state_dict().items()}
        assert live_ema.keys() == ema.keys()
        assert all(torch.equal(live_ema[k], v) for k, v in ema.items())
        assert int(module.ema.n_averaged) == 3
        self.checked = True


def test_resume_restores_optimizers_schedulers_ema_and_step(gan_cfg, tmp_path):
    first = gan_cfg("trainer.max_steps=3", "model.scheduler.milestones=[4]")
    fit(first)
    ckpt_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)

    # a resumed run takes its generator from the checkpoint: init_from is not even read
    second = gan_cfg(
        "trainer.max_steps=5",
        "model.scheduler.milestones=[4]",
        "model.init_from=/nonexistent/srresnet.ckpt",
    )
    restored, counter = CheckRestored(ckpt), CountBatches()
    trainer, module = fit(second, callbacks=[restored, counter], ckpt_path=str(ckpt_path))

    assert restored.checked
    assert counter.batches == 2 and trainer.global_step == 5
    opt_g, opt_d = trainer.optimizers
    assert adam_steps(opt_g) == adam_steps(opt_d) == {5}
    assert int(module.ema.n_averaged) == 5
    assert [s.last_epoch for s in module.lr_schedulers()] == [5, 5]
    # the G milestone (4) was passed in the resumed run; D's milestone stayed at 1e5
    assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(1e-4)


# -- init_from ---------------------------------------------------------------------------------


def save_srresnet_checkpoint(compose, path: Path, *overrides: str) -> SRGANModule:
    """A checkpoint as sr-train writes it (state dict, hparams, metadata) of a tiny SRResNet."""
    cfg = compose(
        "model=srresnet", "model.net.num_blocks=2", "model.net.width=16", "channels=3", *overrides
    )
    module = build_module(cfg)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return module


def test_init_from_loads_the_srresnet_generator(gan_cfg, compose_train, tmp_path):
    path = tmp_path / "srresnet.ckpt"
    srresnet = save_srresnet_checkpoint(compose_train, path, "scale=2")
    cfg = gan_cfg("trainer.max_steps=1", f"model.init_from={path}")

    class AtStart(Callback):
        def on_train_start(self, trainer, module) -> None:
            self.net = snapshot(module.net)

    at_start = AtStart()
    fit(cfg, callbacks=[at_start])
    expected = srresnet.net.state_dict()
    assert at_start.net.keys() == expected.keys()
    assert all(torch.equal(at_start.net[k], v) for k, v in expected.items())


def test_init_from_at_the_wrong_scale_or_channels_fails_clearly(gan_cfg, compose_train, tmp_path):
    module = build_module(gan_cfg())  # x2 RGB
    x4 = tmp_path / "srresnet_x4.ckpt"
    save_srresnet_checkpoint(compose_train, x4, "scale=4")
    with pytest.raises(ValueError, match=r"x4 RGB .* x2 RGB.*scale 4 \(file\) vs 2 \(this run\)"):
        module.init_net_from(str(x4))

    luma = tmp_path / "srresnet_x2_y.ckpt"
    save_srresnet_checkpoint(compose_train, luma, "scale=2", "channels=1")
    with pytest.raises(ValueError, match=r"channels 1 \(file\) vs 3 \(this run\)"):
        module.init_net_from(str(luma))

    deeper = tmp_path / "srresnet_x2_deeper.ckpt"
    save_srresnet_checkpoint(compose_train, deeper, "scale=2", "model.net.num_blocks=3")
    with pytest.raises(ValueError, match=r"unexpected keys: blocks\.2\.") as err:
        module.init_net_from(str(deeper))
    # the error names the override that builds the file's net
    assert "The file's net is built by: model.net.num_blocks=3" in str(err.value)


# -- EMA and export ---------------------------------------------------------------------------


def test_validation_and_export_use_the_ema_generator(gan_cfg, tmp_path):
    cfg = gan_cfg("trainer.max_epochs=1", "model.ema_decay=0.5", "loss.pixel.weight=0.01")
    trainer, module = fit(cfg)
    for key in ("d_loss", "d_real", "d_fake", "g_loss", "g_content", "g_adv", "g_pixel"):
        assert f"train/{key}" in trainer.logged_metrics, key
    assert "val/psnr" in trainer.callback_metrics

    module.eval()
    ema_state = module.ema.module.state_dict()
    live_params = dict(module.net.named_parameters())
    assert any(not torch.equal(ema_state[k], p) for k, p in live_params.items())

    assert module.generator is module.ema.module  # what validation, export and inference run
    lr = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(module(lr, net=module.generator), module.ema.module(lr))
        assert not torch.equal(module(lr, net=module.generator), module.net(lr))

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["sr_lightning"]["ema"] is True
    assert torch.equal(ckpt["state_dict"]["ema.module.tail.weight"], ema_state["tail.weight"])
    # what sr-eval, sr-upscale and sr-export rebuild from the checkpoint: the EMA generator
    exported = resolve_model(ckpt_path=last).net
    assert type(exported) is type(module.net) and not exported.training
    assert all(torch.equal(v, ema_state[k]) for k, v in exported.state_dict().items())


def test_without_ema_the_live_generator_is_evaluated_and_exported(gan_cfg):
    module = build_module(gan_cfg("model.ema_decay=null")).eval()
    assert module.ema is None and not [k for k in module.state_dict() if k.startswith("ema.")]
    assert module.generator is module.net
    untrained = build_module(gan_cfg())  # an EMA that holds no weights yet: the live G
    assert untrained.ema is not None and untrained.generator is untrained.net


# -- preset ------------------------------------------------------------------------------------


def test_srgan_x4_preset_has_the_papers_settings(compose_train):
    cfg = compose_train("experiment=srgan_x4")
    assert OmegaConf.is_missing(cfg.model, "init_from")
    with pytest.raises(ValueError, match=r"model\.init_from is mandatory"):
        build_module(cfg)
    assert (cfg.scale, cfg.channels, cfg.data.name, derive(cfg).patch_size) == (4, 3, "div2k", 96)
    assert cfg.data.batch_size == 16 and cfg.trainer.max_steps == 200_000
    for opt, sched in (("optimizer", "scheduler"), ("d_optimizer", "d_scheduler")):
        assert cfg.model[opt].lr == 1e-4 and cfg.model[opt].betas[0] == 0.9
        assert list(cfg.model[sched].milestones) == [100_000] and cfg.model[sched].gamma == 0.1
    assert cfg.loss.content.layer == "relu5_4"
    assert cfg.loss.content.rescale == pytest.approx(1 / 12.75)
    assert cfg.loss.adversarial.weight == 1e-3 and cfg.loss.adversarial.kind == "vanilla"
    # SRGAN gives up PSNR for perceptual quality: its best checkpoint is the lowest LPIPS
    ckpt = cfg.callbacks.model_checkpoint
    assert (ckpt.monitor, ckpt.mode) == ("val/lpips", "min") and "lpips" in ckpt.filename
    assert cfg.callbacks.perceptual.lpips.enabled and cfg.optimized_metric == "val/lpips_best"


# -- DDP ---------------------------------------------------------------------------------------


class RankAgreement(Callback):
    """Under DDP, checks at the end that every rank holds the same G, D and EMA (rank 0 writes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, trainer, module) -> None:
        import torch.distributed as dist

        def flat(m: torch.nn.Module) -> torch.Tensor:
            return torch.cat([p.detach().flatten() for p in m.parameters()])

        report = {"world_size": dist.get_world_size(), "global_step": trainer.global_step}
        for name, net in (("G", module.net), ("D", module.discriminator), ("EMA", module.ema)):
            mine = flat(net)
            gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, mine)
            report[name] = all(torch.equal(gathered[0], x) for x in gathered[1:])
        report["steps"] = [sorted(adam_steps(opt)) for opt in trainer.optimizers]
        if trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(report))


@pytest.mark.slow
def test_plain_ddp_on_two_cpu_processes_trains_gan_steps(tiny_data, tmp_path):
    run_dir, report = tmp_path / "run", tmp_path / "ranks.json"
    args = [
        *tiny_overrides(tiny_data),
        *TINY_GAN,
        "trainer=ddp_cpu",
        "trainer.max_steps=3",
        "data.batch_size=2",
        f"hydra.run.dir={run_dir}",
        "+callbacks.rank_agreement._target_=tests.test_srgan.RankAgreement",
        f"+callbacks.rank_agreement.path={report}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "sr-train"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "find_unused_parameters=True" in out.stdout + out.stderr
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    ranks = json.loads(report.read_text())
    assert ranks == {
        "world_size": 2,
        "global_step": 3,
        "G": True,
        "D": True,
        "EMA": True,
        "steps": [[3], [3]],
    }
