"""SRGAN (Ledig et al., CVPR'17): an SRResNet generator trained against a discriminator.

Manual optimization, one batch at a time:

1. the generator's output ``sr = G(lr)`` (with gradients only when G steps this batch);
2. a discriminator step with G frozen: ``adv.discriminator_loss(D(hr), D(sr.detach()))``;
3. a generator step with D frozen: ``w_c · content + w_a · adv.generator_loss(D(sr))
   (+ w_p · pixel)``, then the EMA of the generator is updated;
4. both lr schedulers step (their milestones count batches).

The generator steps on batch ``b`` when ``b >= d_warmup_steps`` and ``(b - d_warmup_steps)``
is a multiple of ``d_steps_per_g`` (BasicSR's ``net_d_init_iters`` / ``net_d_iters``).

**One global step per batch.** Lightning counts every ``optimizer.step()`` as a global step
in manual optimization (Lightning-AI/pytorch-lightning#17958), so a D+G batch would be two
steps and ``trainer.max_steps``, ``ModelCheckpoint(every_n_train_steps)`` and ``{step}`` in
file names would count half-batches. Here exactly one optimizer step per batch is counted:
the generator's when it steps, else the discriminator's; the other one's step only goes
through the profiler. ``trainer.global_step`` is then the number of batches trained, and
logger x-axes (which Lightning already counts in batches) agree with it.

Everything else (forward, the pixel and content loss terms, validation / test / predict,
checkpoint metadata) is the base module's. ``self.net`` is the live generator;
:attr:`generator` (the EMA once it holds weights) is the one validated and shipped.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from sr_lightning.losses.adversarial import AdversarialLoss
from sr_lightning.modules.base import CHECKPOINT_KEY, SRModule
from sr_lightning.modules.building import build_optimizer
from sr_lightning.modules.ema import GeneratorEMA
from sr_lightning.modules.tracking import check_finite
from sr_lightning.runtime.lightning_compat import (
    ddp_kwargs,
    forget_step_metrics,
    set_optimizer_step_hooks,
)

log = logging.getLogger(__name__)


def _check_config(
    loss: Mapping | None, scheduler_monitor: str | None, init_from: str | None
) -> dict[str, Any]:
    """What the config schema (runtime/schema.py) cannot see: the ``???`` of a mandatory
    ``init_from`` and a module built without the schema; the ``loss.adversarial`` node. The
    value checks (scheduler_interval, loss_reduction, d_steps_per_g, d_warmup_steps, the
    adversarial and grad_clip keys) are the schema's, at start-up."""
    adversarial = dict(loss or {}).get("adversarial")
    if not adversarial:
        raise ValueError(
            "model=srgan needs loss.adversarial (use loss=gan); for content-only training "
            "use model=srresnet loss=perceptual"
        )
    if scheduler_monitor:
        raise ValueError(
            "model.scheduler_monitor is not supported by SRGAN (manual optimization): use "
            "a scheduler that needs no metric, such as MultiStepLR"
        )
    if init_from == "???":  # the config's mandatory marker, left unresolved by to_container
        raise ValueError(
            "model.init_from is mandatory for SRGAN: pass model.init_from=<SRResNet checkpoint> "
            "(the paper starts from an MSE-trained SRResNet, e.g. `sr-train "
            "experiment=srresnet_x4`), or model.init_from=null to train G from scratch"
        )
    return dict(adversarial)


def parse_grad_clip(cfg: Mapping | None) -> dict[str, Any]:
    cfg = dict(cfg or {})
    return {
        "generator": cfg.get("generator"),
        "discriminator": cfg.get("discriminator"),
        "algorithm": cfg.get("algorithm") or "norm",
    }


class SRGANModule(SRModule):
    """Generator ``self.net`` + ``self.discriminator``; VGG content loss from ``loss.content``."""

    method = "srgan"
    init_from_partial = False  # the generator of an SRResNet (or SRGAN) file, every tensor

    def __init__(
        self,
        *,
        discriminator: Mapping,
        d_optimizer: Mapping,
        d_scheduler: Mapping | None = None,
        d_steps_per_g: int = 1,
        d_warmup_steps: int = 0,
        grad_clip: Mapping | None = None,
        ema_decay: float | None = 0.999,
        scheduler_interval: str = "step",
        scale: int = 4,
        channels: int = 3,
        **kwargs: Any,
    ) -> None:
        """``kwargs``: the base module's arguments (``net`` is the generator)."""
        adversarial = _check_config(
            kwargs.get("loss"), kwargs.get("scheduler_monitor"), kwargs.get("init_from")
        )
        super().__init__(
            scheduler_interval=scheduler_interval, scale=scale, channels=channels, **kwargs
        )
        self.automatic_optimization = False
        self.discriminator = instantiate(discriminator)
        self.adversarial_loss = AdversarialLoss(adversarial.get("kind", "vanilla"))
        self.adversarial_weight = float(adversarial.get("weight", 1e-3))
        self.real_label = float(adversarial.get("real_label", 1.0))
        self.d_steps_per_g = int(d_steps_per_g)
        self.d_warmup_steps = int(d_warmup_steps)
        self.grad_clip = parse_grad_clip(grad_clip)
        self.ema = GeneratorEMA(self.net, float(ema_decay)) if ema_decay else None

    # -- setup ------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.enable_ddp_unused_parameters()
            self.check_clipping_precision()

    def check_clipping_precision(self) -> None:
        """Refuse clipping under fp16 loss scaling, which would clip the scaled gradients.

        In manual optimization the GradScaler unscales inside ``optimizer.step()``, after
        ``clip_gradients`` has run; bf16 and fp32 have no scaler and clip true gradients.
        """
        clipping = self.grad_clip["generator"] or self.grad_clip["discriminator"]
        if clipping and getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            raise ValueError(
                "model.grad_clip with trainer.precision=16-mixed would clip loss-scaled "
                "gradients (SRGAN steps its optimizers by hand); use trainer.precision=bf16-mixed "
                "or 32-true, or set model.grad_clip.generator/discriminator=null"
            )

    def on_fit_start(self) -> None:
        # Here the checkpoint of a resumed run is known (trainer.ckpt_path) and already
        # restored; that run keeps its own generator and does not need the init_from file.
        if self.hparams.init_from and not self.trainer.ckpt_path:
            self.init_net_from(self.hparams.init_from)

    def enable_ddp_unused_parameters(self) -> None:
        """Make plain ``strategy=ddp`` work for SRGAN by turning on ``find_unused_parameters``.

        Why: Lightning's DDP wraps the whole module, so every ``manual_backward`` must
        account for G's *and* D's parameters. Each phase uses only one network (the D phase
        sees a detached ``sr``; in the G phase D is frozen by ``toggle_optimizer``), so with
        ``find_unused_parameters=False`` the reducer waits for gradients that never come, and
        the first batch's G phase fails ("It looks like your LightningModule has parameters
        that were not used in producing the loss"; observed with ``trainer=ddp_cpu``). ``find_unused_parameters=True`` makes DDP walk each
        loss's graph and skip the other network, with gradients still bucketed and overlapped
        with the backward pass; the walk is cheap next to the VGG and the convolutions.

        Rejected: ``static_graph=True`` assumes one fixed set of used parameters per
        iteration, but SRGAN alternates two different sets (and skips G on warm-up batches);
        per-phase ``no_sync`` plus hand-written all-reduces would give up DDP's bucketing and
        its buffer broadcasts for no gain. The strategy's kwargs are read by
        ``DDPStrategy.setup``, which runs after this hook, so setting them here takes effect.
        """
        strategy = self.trainer.strategy
        if not isinstance(strategy, DDPStrategy):
            return
        kwargs = ddp_kwargs(strategy)
        if kwargs.get("static_graph"):
            raise ValueError(
                "SRGAN cannot train with DDP static_graph=True (its D and G phases use different "
                "parameters); use trainer.strategy=ddp"
            )
        if not kwargs.get("find_unused_parameters"):
            kwargs["find_unused_parameters"] = True
            rank_zero_info(
                "SRGAN: DDP find_unused_parameters=True (each phase updates one network)"
            )

    def configure_model(self) -> None:
        super().configure_model()
        if self.hparams.channels_last:
            self.discriminator.to(memory_format=torch.channels_last)
            if self.ema is not None:
                self.ema.to(memory_format=torch.channels_last)

    # -- optimizers -------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        """``[G optimizer, D optimizer]`` and their schedulers (stepped by this module)."""
        opt_g = build_optimizer(self.hparams.optimizer, self.parameter_groups())
        d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        opt_d = build_optimizer(self.hparams.d_optimizer, d_params)
        schedulers = []
        for name, cfg, opt in (
            ("generator", self.hparams.scheduler, opt_g),
            ("discriminator", self.hparams.d_scheduler, opt_d),
        ):
            if not cfg:
                continue
            scheduler = self.build_scheduler(cfg, opt)
            if isinstance(scheduler, ReduceLROnPlateau):
                raise ValueError(
                    "ReduceLROnPlateau needs a monitored metric, which SRGAN's hand-stepped "
                    "schedulers do not have: use MultiStepLR (the paper) or another scheduler"
                )
            # `name` labels LearningRateMonitor's curves; `interval` is only read by it too
            schedulers.append(
                {
                    "scheduler": scheduler,
                    "name": f"lr-{name}",
                    "interval": self.hparams.scheduler_interval,
                }
            )
        return [opt_g, opt_d], schedulers

    def step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        with warnings.catch_warnings():
            # During a D-only warm-up the G scheduler steps before G's optimizer ever has;
            # that is intended (milestones count batches), not the misuse PyTorch warns about.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()

    # -- training ---------------------------------------------------------------------------

    def generator_steps_at(self, batch_number: int) -> bool:
        """Whether G is updated on the ``batch_number``-th batch of training (from 0)."""
        after_warmup = batch_number - self.d_warmup_steps
        return after_warmup >= 0 and after_warmup % self.d_steps_per_g == 0

    def count_one_step_per_batch(self, counted: Any) -> None:
        """Only ``counted``'s ``step()`` advances ``trainer.global_step`` in this batch.

        Lightning's manual loop installs a counting hook on every optimizer before each
        ``training_step`` (and removes it after); the others get profiler-only hooks here.
        """
        profiler = self.trainer.profiler
        for opt in self.optimizers():
            if opt is counted:
                continue
            set_optimizer_step_hooks(
                opt,
                partial(profiler.start, "optimizer_step"),
                partial(profiler.stop, "optimizer_step"),
            )

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        g_turn = self.generator_steps_at(self.global_step)
        self.count_one_step_per_batch(opt_g if g_turn else opt_d)
        lr, hr = batch["lr"], batch["hr"]
        with torch.set_grad_enabled(g_turn):
            sr = self(lr, batch["scale"])
        self.discriminator_phase(opt_d, sr.detach(), hr)
        if g_turn:
            self.generator_phase(opt_g, sr, hr)
            if self.ema is not None:
                self.ema.update_parameters(self.net)
        else:
            # Lightning re-sends every step metric of the epoch at each later step until it is
            # logged again: without this, G's curves would repeat their last value on D-only
            # batches as if G had been trained; forgotten, these rows have no G values
            forget_step_metrics(self.trainer, prefix="train/g_")
        if self.hparams.scheduler_interval == "step":
            self.step_schedulers()

    def on_train_epoch_end(self) -> None:
        if self.hparams.scheduler_interval == "epoch":
            self.step_schedulers()

    def discriminator_objective(
        self, hr: torch.Tensor, sr: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss on real ``hr`` and (detached) fake ``sr``, with its terms for logging."""
        real_logits = self.discriminator(hr)
        fake_logits = self.discriminator(sr)
        real_term, fake_term = self.adversarial_loss.discriminator_terms(
            real_logits, fake_logits, self.real_label
        )
        terms = {
            "d_loss_real": real_term,
            "d_loss_fake": fake_term,
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
        }
        return real_term + fake_term, terms

    def generator_objective(
        self, sr: torch.Tensor, hr: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``w_c · content + w_a · adversarial (+ w_p · pixel)``: the base module's loss
        (:meth:`compute_loss`) plus the adversarial term; terms are unweighted."""
        total, terms = self.compute_loss(sr, hr)
        adversarial = self.adversarial_loss.generator_loss(self.discriminator(sr))
        terms = {"g_adv": adversarial, **{f"g_{k}": v for k, v in terms.items()}}
        return total + self.adversarial_weight * adversarial, terms

    def discriminator_phase(self, opt_d: Any, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """One D update on real ``hr`` vs detached ``sr``, with G frozen."""
        self.toggle_optimizer(opt_d)
        try:
            opt_d.zero_grad(set_to_none=True)
            d_loss, terms = self.discriminator_objective(hr, sr)
            check_finite(d_loss, terms, self.global_step)
            self.manual_backward(d_loss)
            self.clip(opt_d, self.grad_clip["discriminator"])
            opt_d.step()
        finally:
            self.untoggle_optimizer(opt_d)
        n = hr.shape[0]
        self.log("train/d_loss", d_loss.detach(), prog_bar=True, batch_size=n)
        self.log_dict(
            {"train/d_real": terms["d_real"], "train/d_fake": terms["d_fake"]}, batch_size=n
        )

    def generator_phase(self, opt_g: Any, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """One G update (content + adversarial + pixel) through a frozen D."""
        self.toggle_optimizer(opt_g)
        try:
            opt_g.zero_grad(set_to_none=True)
            g_loss, terms = self.generator_objective(sr, hr)
            check_finite(g_loss, terms, self.global_step)
            self.manual_backward(g_loss)
            self.clip(opt_g, self.grad_clip["generator"])
            opt_g.step()
        finally:
            self.untoggle_optimizer(opt_g)
        n = hr.shape[0]
        self.log("train/g_loss", g_loss.detach(), prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=n)

    def clip(self, optimizer: Any, value: float | None) -> None:
        if value:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=float(value),
                gradient_clip_algorithm=self.grad_clip["algorithm"],
            )

    # -- evaluation and export --------------------------------------------------------------

    @property
    def generator(self) -> nn.Module:
        """The EMA generator once it holds weights, else the live one."""
        if self.ema is not None and self.ema.started:
            return self.ema.module
        return self.net

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY]["ema"] = bool(self.ema is not None and self.ema.started)
