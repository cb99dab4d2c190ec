"""Shared LightningModule logic: forward with optional pre-upsampling, pixel(+content) training,
and the papers' validation / test protocol for every method.

The module holds the training logic; its parts are built from plain config dicts
(:mod:`.building`), so a checkpoint's hyperparameters are plain containers that
``torch.load(weights_only=True)`` accepts and that rebuild the same model. The epoch's loss
and the best ``val/psnr`` are torchmetrics aggregators kept across checkpoints
(:mod:`.tracking`); the budget schedules' progress is :class:`~sr_lightning.core.schedules.
BudgetProgress`; what needs Lightning's private state is in
:mod:`sr_lightning.runtime.lightning_compat`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from sr_lightning.core.model_file import CHECKPOINT_KEY
from sr_lightning.core.model_files import init_net_from
from sr_lightning.core.schedules import BudgetLR, BudgetProgress
from sr_lightning.data.degradation import bicubic_upscale
from sr_lightning.losses.pixel import check_loss_reduction, per_patch_scale
from sr_lightning.modules import building
from sr_lightning.modules.evaluation import compute_and_reset, metrics_of
from sr_lightning.modules.metadata import checkpoint_metadata
from sr_lightning.modules.tracking import (
    BEST_KEY,
    EPOCH_LOSS_KEY,
    BestScore,
    EpochLoss,
    load_tracking,
    save_tracking,
)
from sr_lightning.nets import upsampling_kind
from sr_lightning.runtime.lightning_compat import (
    attached_trainer,
    step_schedulers_skipped_on_resume,
)

__all__ = ["BEST_KEY", "CHECKPOINT_KEY", "EPOCH_LOSS_KEY", "SRModule"]


class SRModule(LightningModule):
    """Base module: subclasses add method-specific training logic.

    ``method`` (the yaml's ``method:``) names the method in run names, checkpoints, reports
    and exports; the class attribute is only the default for modules built without it.
    ``display`` (``{name, colour}``) is how ``sr-report`` shows it; it travels in checkpoints.
    ``init_from`` starts the net from another checkpoint's net: every tensor whose name and
    shape match (EDSR's x3/x4 from its x2 model: all but the upsampler).
    """

    method = "base"
    # init_from copies the tensors that fit (EDSR x3 from x2); False: every tensor must fit
    init_from_partial = True

    def __init__(
        self,
        net: Mapping,
        optimizer: Mapping,
        scheduler: Mapping | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str | None = None,
        loss: Mapping | None = None,
        loss_reduction: str = "mean",
        scale: int = 3,
        channels: int = 1,
        last_layer_lr_mult: float = 1.0,
        channels_last: bool = False,
        compile: bool = False,
        method: str | None = None,
        init_from: str | None = None,
        display: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        if method is not None:
            self.method = str(method)
        self.scale = int(scale)
        self.channels = int(channels)
        self.net = instantiate(net)
        self.upsampling = upsampling_kind(self.net)
        self.pixel_loss, self.pixel_weight, self.content_loss, self.content_weight = (
            building.build_losses(loss)
        )
        self.loss_reduction = check_loss_reduction(loss_reduction)
        self.val_metrics = nn.ModuleDict()
        self.val_bicubic = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()
        # the epoch's training loss, summed on the device (no sync); also the NaN/Inf guard
        self.epoch_loss = EpochLoss()
        # the best val/psnr so far, at val/psnr's own float64 precision
        self.psnr_best = BestScore()
        # the global step of the last validation during fit: a run that stops between two
        # validations (max_steps, max_time) is validated once more at its end (apps/train.py)
        self.validated_at_step: int | None = None
        # the compiled net is kept out of the module tree, so state_dict keys stay `net.*`
        object.__setattr__(self, "_compiled_net", None)

    # -- model ------------------------------------------------------------------------------

    @property
    def pre_upsampling(self) -> bool:
        return self.upsampling == "pre"

    def configure_model(self) -> None:
        """Compile the net only (compiling the whole LightningModule is not supported)."""
        if self.hparams.compile and self._compiled_net is None:
            object.__setattr__(self, "_compiled_net", torch.compile(self.net))
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)

    @property
    def generator(self) -> nn.Module:
        """The generator that validation, test, predict, export and inference run: the trained
        net (SRGAN: the EMA of its generator once that holds weights)."""
        return self.net

    def forward(
        self, lr: torch.Tensor, scale: int | None = None, *, net: nn.Module | None = None
    ) -> torch.Tensor:
        """LR in [0, 1] -> SR through ``net`` (default: the trained net; evaluation passes
        :attr:`generator`); pre-upsampling nets get the bicubic upscale of the LR."""
        x = bicubic_upscale(lr, scale or self.scale) if self.pre_upsampling else lr
        return self._net_forward(x, net)

    def _net_forward(self, x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """``net`` (default: the trained net, compiled when ``model.compile=true``) on an input
        prepared for it (``model.channels_last`` applied here)."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if net is None or net is self.net:
            net = self._compiled_net if self._compiled_net is not None else self.net
        return net(x)

    # -- training ---------------------------------------------------------------------------

    def training_pair(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR, target) of a training batch; methods that train on other inputs override it."""
        return self(batch["lr"], batch["scale"]), batch["hr"]

    def loss_region(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pixels the loss sees: all of them, unless a method says otherwise."""
        return sr, hr

    def compute_loss(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Weighted pixel (+ optional VGG content) loss over ``loss_region``, scaled by
        ``loss_reduction``, with its terms for logging."""
        sr, hr = self.loss_region(sr, hr)
        terms = {}
        total = sr.new_zeros(())
        if self.pixel_weight:
            terms["pixel"] = self.pixel_loss(sr, hr)
            total = total + self.pixel_weight * terms["pixel"]
        if self.content_loss is not None:
            terms["content"] = self.content_loss(sr, hr)
            total = total + self.content_weight * terms["content"]
        k = per_patch_scale(self.loss_reduction, hr)
        if k != 1.0:
            total, terms = total * k, {name: value * k for name, value in terms.items()}
        return total, terms

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        sr, hr = self.training_pair(batch)
        loss, terms = self.compute_loss(sr, hr)
        self.log_train_loss(loss, terms, hr.shape[0])
        return loss

    def log_train_loss(
        self, loss: torch.Tensor, terms: Mapping[str, torch.Tensor], batch_size: int
    ) -> None:
        """``train/loss_step`` (and the terms) on logging steps, ``train/loss_epoch`` at the end.

        ``self.log`` costs about a millisecond of Python per call, and reading a CUDA value
        back (a NaN check, a progress bar) stalls the GPU queue. So every step only adds to
        device-side sums; values are logged, and checked, every ``trainer.log_every_n_steps``
        steps, exactly when Lightning would have written them to the loggers anyway.
        """
        self.epoch_loss.update(loss, batch_size)
        log_step = self.is_log_step()
        if log_step or loss.device.type == "cpu":  # on the CPU a check costs no sync
            self.epoch_loss.check(f"at or before global step {self.global_step}", terms)
        if not log_step:
            return
        step_only = {"on_step": True, "on_epoch": False, "batch_size": batch_size}
        self.log("train/loss_step", loss, prog_bar=True, **step_only)
        if len(terms) > 1:
            self.log_dict({f"train/{k}": v for k, v in terms.items()}, **step_only)

    def is_log_step(self) -> bool:
        """Lightning's own rule for when on-step values reach the loggers."""
        trainer = attached_trainer(self)
        if trainer is None or trainer.fast_dev_run:
            return True
        return (self.global_step + 1) % max(1, trainer.log_every_n_steps) == 0

    def on_train_epoch_end(self) -> None:
        """The epoch's mean training loss over every sample and rank (the plateau monitor)."""
        if self.epoch_loss.count:
            self.epoch_loss.check(f"at or before global step {self.global_step}")
            self.log("train/loss_epoch", self.epoch_loss.mean(), prog_bar=True, sync_dist=True)
        self.epoch_loss.reset()
        trainer = attached_trainer(self)
        if trainer is not None and self.automatic_optimization:
            step_schedulers_skipped_on_resume(trainer)

    def on_fit_start(self) -> None:
        # a resumed run (trainer.ckpt_path) keeps its own, already restored weights
        if self.hparams.get("init_from") and not self.trainer.ckpt_path:
            self.init_net_from(self.hparams.init_from)

    def init_net_from(self, path: str) -> None:
        """Start the net from ``model.init_from`` (any model file; see core/model_files.py):
        every tensor whose name and shape match, or, with ``init_from_partial = False``
        (SRGAN from SRResNet, spandrel fine-tuning), every tensor strictly."""
        rank_zero_info(
            init_net_from(
                self.net,
                path,
                scale=self.scale,
                channels=self.channels,
                net_spec=self.hparams.get("net"),
                partial=self.init_from_partial,
            )
        )

    def on_train_start(self) -> None:
        # A step checkpoint is written before that step's scheduler update, so a resumed
        # run would train one step at the previous lr; a budget schedule recomputes its lr
        # from the restored step and Timer (the value the uninterrupted run had set).
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, BudgetLR):
                config.scheduler.sync()

    # -- optimizers -------------------------------------------------------------------------

    def parameter_groups(self) -> list[dict]:
        """All trainable parameters; the net's last layer at ``last_layer_lr_mult`` × lr."""
        hparams = self.hparams
        return building.net_parameter_groups(
            self.net, hparams.last_layer_lr_mult, hparams.optimizer
        )

    def configure_optimizers(self) -> Any:
        hparams = self.hparams
        optimizer = building.build_optimizer(hparams.optimizer, self.parameter_groups())
        if not hparams.scheduler:
            return optimizer
        scheduler = self.build_scheduler(hparams.scheduler, optimizer)
        config = {"scheduler": scheduler, "interval": hparams.scheduler_interval}
        if hparams.scheduler_monitor:
            config["monitor"] = hparams.scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def build_scheduler(self, cfg: Mapping, optimizer: torch.optim.Optimizer) -> Any:
        """A scheduler from its ``_partial_`` config; a :class:`BudgetLR` follows this run's
        budget (:class:`BudgetProgress` of the trainer)."""
        progress = BudgetProgress(partial(attached_trainer, self))
        return building.build_scheduler(cfg, optimizer, progress)

    # -- evaluation -------------------------------------------------------------------------

    def eval_set_names(self, stage: str) -> list[str]:
        trainer = attached_trainer(self)
        datamodule = getattr(trainer, "datamodule", None) if trainer else None
        names = getattr(datamodule, f"{stage}_set_names", None)
        return list(names) if names else [stage]

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        name = self.eval_set_names("val")[dataloader_idx]
        sr, hr = self(batch["lr"], net=self.generator), batch["hr"]
        scores = metrics_of(self.val_metrics, name, self.scale, self.device).score(sr, hr)
        bicubic = bicubic_upscale(batch["lr"], self.scale)
        bicubic_scores = metrics_of(self.val_bicubic, name, self.scale, self.device).score(
            bicubic, hr
        )
        # callbacks (image panels, the per-image table) reuse these instead of recomputing
        return {"sr": sr, "bicubic": bicubic, "scores": scores, "bicubic_scores": bicubic_scores}

    def on_validation_epoch_end(self) -> None:
        results = compute_and_reset(self.val_metrics)
        bicubic = compute_and_reset(self.val_bicubic)
        if not results:
            return
        self.log_results("val", results)
        primary = next(iter(results))
        self.log("val/psnr_bicubic", bicubic[primary]["psnr"])
        trainer = attached_trainer(self)
        if trainer is not None and trainer.sanity_checking:
            return  # the sanity check of an untrained model must not count as the best
        self.validated_at_step = self.global_step
        # a NaN epoch (a diverged run) does not wipe out the best
        best = self.psnr_best.add(results[primary]["psnr"].detach())
        self.log("val/psnr_best", best, prog_bar=True)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.eval_set_names("test")[dataloader_idx]
        sr = self(batch["lr"], net=self.generator)
        metrics_of(self.test_metrics, name, self.scale, self.device).update(sr, batch["hr"])

    def on_test_epoch_end(self) -> None:
        self.log_results("test", compute_and_reset(self.test_metrics))

    def log_results(self, stage: str, results: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """``stage/psnr`` for the first (monitored) set; ``stage/<set>/psnr`` for every set."""
        for i, (name, values) in enumerate(results.items()):
            for key, value in values.items():
                if i == 0:
                    self.log(f"{stage}/{key}", value, prog_bar=key == "psnr")
                if len(results) > 1:
                    self.log(f"{stage}/{name}/{key}", value)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        lr = batch["lr"] if isinstance(batch, Mapping) else batch
        return self(lr, net=self.generator)

    # -- checkpoints ------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Plain metadata so tools know what a checkpoint holds without rebuilding it, the
        epoch's loss so far and the best ``val/psnr`` (so that a resumed run continues both)."""
        checkpoint[CHECKPOINT_KEY] = checkpoint_metadata(self)
        save_tracking(checkpoint, CHECKPOINT_KEY, self.epoch_loss, self.psnr_best)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume the epoch's loss sums and ``val/psnr_best`` (the sweepers' objective)."""
        load_tracking(checkpoint, CHECKPOINT_KEY, self.epoch_loss, self.psnr_best)
