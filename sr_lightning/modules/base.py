"""Shared LightningModule logic: forward with optional pre-upsampling, pixel(+content) training,
and the papers' validation / test protocol for every method.

Nets are built here from plain config dicts, so a checkpoint's hyperparameters are plain
containers that ``torch.load(weights_only=True)`` accepts and that rebuild the same model.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from sr_lightning.core.metrics import SRMetrics
from sr_lightning.core.model_file import CHECKPOINT_KEY
from sr_lightning.core.model_files import init_net_from
from sr_lightning.core.schedules import BudgetLR, is_budget_schedule
from sr_lightning.data.degradation import bicubic_upscale
from sr_lightning.losses.pixel import PixelLoss, check_loss_reduction, per_patch_scale
from sr_lightning.nets import upsampling_kind

# the running sum and count of the epoch's training loss (a plain tensor and an int)
EPOCH_LOSS_KEY = "sr_lightning_epoch_loss"
# the best val/psnr so far, in the metadata (it is not part of the state dict)
BEST_KEY = "val_psnr_best"

log = logging.getLogger(__name__)


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
        loss = dict(loss or {"pixel": {"kind": "mse", "weight": 1.0}})
        pixel = loss.get("pixel") or {"kind": "mse", "weight": 0.0}
        self.pixel_loss = PixelLoss(pixel.get("kind", "mse"))
        self.pixel_weight = float(pixel.get("weight", 1.0))
        self.content_loss, self.content_weight = self.build_content_loss(loss.get("content"))
        self.loss_reduction = check_loss_reduction(loss_reduction)
        self.val_metrics = nn.ModuleDict()
        self.val_bicubic = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()
        # the best val/psnr so far, kept at val/psnr's own precision (float64; MaxMetric
        # casts to float32), so it equals the val/psnr of the epoch it comes from
        self._psnr_best: torch.Tensor | None = None
        # the global step of the last validation during fit: a run that stops between two
        # validations (max_steps, max_time) is validated once more at its end (apps/train.py)
        self.validated_at_step: int | None = None
        # the compiled net is kept out of the module tree, so state_dict keys stay `net.*`
        object.__setattr__(self, "_compiled_net", None)
        # the epoch's training loss and a NaN/Inf flag, accumulated on the device (no sync)
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        self._nonfinite: torch.Tensor | None = None
        self._budget_steps: float | None = None  # the step budget, read once (budget_progress)

    # -- model ------------------------------------------------------------------------------

    @staticmethod
    def build_content_loss(cfg: Mapping | None) -> tuple[nn.Module | None, float]:
        if not cfg or not float(cfg.get("weight", 0.0)):
            return None, 0.0
        from sr_lightning.losses.content import VGGContentLoss

        kwargs = {k: v for k, v in cfg.items() if k != "weight"}
        return VGGContentLoss(**kwargs), float(cfg["weight"])

    @property
    def pre_upsampling(self) -> bool:
        return self.upsampling == "pre"

    def configure_model(self) -> None:
        """Compile the net only (compiling the whole LightningModule is not supported)."""
        if self.hparams.compile and self._compiled_net is None:
            object.__setattr__(self, "_compiled_net", torch.compile(self.net))
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def forward(self, lr: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        """LR in [0, 1] -> SR; pre-upsampling nets get the bicubic upscale of the LR."""
        x = bicubic_upscale(lr, scale or self.scale) if self.pre_upsampling else lr
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.run_net(x)

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        """The net on a prepared input, compiled when ``model.compile=true``."""
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
        detached = loss.detach()
        bad = ~torch.isfinite(detached)
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        weighted = detached * batch_size
        if self._loss_sum is not None and self._loss_sum.device != weighted.device:
            self._loss_sum = self._loss_sum.to(weighted.device)  # restored from a checkpoint
        self._loss_sum = weighted if self._loss_sum is None else self._loss_sum + weighted
        self._loss_count += batch_size
        log_step = self.is_log_step()
        if log_step or loss.device.type == "cpu":  # on the CPU a check costs no sync
            self._check_nonfinite_seen(terms)
        if not log_step:
            return
        n = batch_size
        self.log("train/loss_step", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        if len(terms) > 1:
            self.log_dict(
                {f"train/{k}": v for k, v in terms.items()},
                on_step=True,
                on_epoch=False,
                batch_size=n,
            )

    def is_log_step(self) -> bool:
        """Lightning's own rule for when on-step values reach the loggers."""
        trainer = self._trainer
        if trainer is None or trainer.fast_dev_run:
            return True
        return (self.global_step + 1) % max(1, trainer.log_every_n_steps) == 0

    def _check_nonfinite_seen(self, terms: Mapping[str, torch.Tensor] | None = None) -> None:
        """``check_finite`` for every loss since the last check, with one read-back."""
        if self._nonfinite is None or not bool(self._nonfinite):
            return
        self._nonfinite = None
        bad = [k for k, v in (terms or {}).items() if not torch.isfinite(v)] or ["total"]
        raise FloatingPointError(
            f"non-finite loss at or before global step {self.global_step} "
            f"(term: {', '.join(bad)}). "
            "Lower the learning rate, enable gradient clipping, or check the data."
        )

    def on_train_epoch_end(self) -> None:
        """The epoch's mean training loss over every sample and rank (the plateau monitor)."""
        if self._loss_count:
            self._check_nonfinite_seen()
            mean = self._loss_sum / self._loss_count
            self.log("train/loss_epoch", mean, prog_bar=True, sync_dist=True)
        self._loss_sum, self._loss_count = None, 0
        self.step_schedulers_skipped_on_resume()

    def step_schedulers_skipped_on_resume(self) -> None:
        """Step the epoch-interval schedulers at the end of an epoch this run resumed into.

        Lightning 2.6 skips them there (``FitLoop.on_advance_end`` steps only when not
        ``restarting``), so a run resumed mid-epoch would keep one epoch's LR too long and
        drift from the run that never stopped. Everything they read is restored: the optimizer,
        the scheduler, and the epoch's loss (``train/loss_epoch``, logged just before).
        """
        trainer = self._trainer
        if trainer is None or not self.automatic_optimization:
            return
        fit_loop = trainer.fit_loop
        if fit_loop.restarting and fit_loop.epoch_loop._num_ready_batches_reached():
            fit_loop.epoch_loop.update_lr_schedulers("epoch", update_plateau_schedulers=True)

    def check_finite(self, loss: torch.Tensor, terms: Mapping[str, torch.Tensor]) -> None:
        """Stop on a NaN/Inf loss with the step and the offending term, not silently diverge."""
        if torch.isfinite(loss):
            return
        bad = [k for k, v in terms.items() if not torch.isfinite(v)] or ["total"]
        raise FloatingPointError(
            f"non-finite loss at global step {self.global_step} (term: {', '.join(bad)}). "
            "Lower the learning rate, enable gradient clipping, or check the data."
        )

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
        params = [p for p in self.net.parameters() if p.requires_grad]
        mult = float(self.hparams.last_layer_lr_mult)
        if mult == 1.0 or not hasattr(self.net, "last_layer_parameters"):
            return [{"params": params}]
        last = {id(p) for p in self.net.last_layer_parameters()}
        base_lr = float(self.hparams.optimizer["lr"])
        return [
            {"params": [p for p in params if id(p) not in last]},
            {"params": [p for p in params if id(p) in last], "lr": base_lr * mult},
        ]

    def configure_optimizers(self) -> Any:
        # configs use `_partial_: true`, so instantiate gives a factory awaiting params/optimizer;
        # a key set to null is left out (a recipe can drop SGD's momentum when it picks Adam)
        options = {k: v for k, v in self.hparams.optimizer.items() if v is not None}
        optimizer = instantiate(options)(params=self.parameter_groups())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = {
            "scheduler": self.build_scheduler(self.hparams.scheduler, optimizer),
            "interval": self.hparams.scheduler_interval,
        }
        if self.hparams.scheduler_monitor:
            scheduler["monitor"] = self.hparams.scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def build_scheduler(self, cfg: Mapping, optimizer: torch.optim.Optimizer) -> Any:
        """A scheduler from its ``_partial_`` config; a :class:`BudgetLR` reads this run's
        ``budget_progress``."""
        factory = instantiate(cfg)
        if is_budget_schedule(factory):
            return factory(optimizer=optimizer, progress=self.budget_progress)
        return factory(optimizer=optimizer)

    def budget_progress(self) -> float:
        """Fraction of the run's budget done: steps (max_steps / max_epochs) or train time
        (``trainer.max_time``, on Lightning's Timer, resumed from checkpoints), whichever
        is further along (:mod:`sr_lightning.core.schedules`)."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        if self._budget_steps is None:
            if trainer.train_dataloader is None:
                # configure_optimizers runs before the loader exists; Lightning's estimate
                # would build it early (ahead of a resumed loader's state): the first step
                # is at progress 0 anyway, and on_train_start re-syncs a resumed run
                return 0.0
            # Lightning's estimate honours max_steps and max_epochs (inf when unbounded)
            self._budget_steps = float(trainer.estimated_stepping_batches)
        done = (
            trainer.global_step / self._budget_steps if math.isfinite(self._budget_steps) else 0.0
        )
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is not None:
            elapsed = timer.time_elapsed()
            done = max(done, elapsed / max(elapsed + remaining, 1e-9))
        return min(done, 1.0)

    # -- evaluation -------------------------------------------------------------------------

    def eval_set_names(self, stage: str) -> list[str]:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        names = getattr(datamodule, f"{stage}_set_names", None)
        return list(names) if names else [stage]

    def _metric(self, store: nn.ModuleDict, name: str) -> SRMetrics:
        if name not in store:
            store[name] = SRMetrics(crop=self.scale).to(self.device)
        return store[name]

    def sr_for_eval(self, lr: torch.Tensor) -> torch.Tensor:
        """The SR image that metrics see; SRGAN overrides this to use its EMA generator."""
        return self(lr)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        name = self.eval_set_names("val")[dataloader_idx]
        sr, hr = self.sr_for_eval(batch["lr"]), batch["hr"]
        scores = self._metric(self.val_metrics, name).score(sr, hr)
        bicubic = bicubic_upscale(batch["lr"], self.scale)
        bicubic_scores = self._metric(self.val_bicubic, name).score(bicubic, hr)
        # callbacks (image panels, the per-image table) reuse these instead of recomputing
        return {"sr": sr, "bicubic": bicubic, "scores": scores, "bicubic_scores": bicubic_scores}

    def on_validation_epoch_end(self) -> None:
        results = self.compute_metrics(self.val_metrics)
        bicubic = self.compute_metrics(self.val_bicubic)
        if not results:
            return
        self.log_results("val", results)
        primary = next(iter(results))
        self.log("val/psnr_bicubic", bicubic[primary]["psnr"])
        if self._trainer is not None and self.trainer.sanity_checking:
            return  # the sanity check of an untrained model must not count as the best
        self.validated_at_step = self.global_step
        psnr = results[primary]["psnr"].detach()
        # fmax: a NaN epoch (a diverged run) does not wipe out the best
        best = psnr if self._psnr_best is None else torch.fmax(self._psnr_best.to(psnr), psnr)
        self._psnr_best = best
        self.log("val/psnr_best", best, prog_bar=True)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.eval_set_names("test")[dataloader_idx]
        self._metric(self.test_metrics, name).update(self.sr_for_eval(batch["lr"]), batch["hr"])

    def on_test_epoch_end(self) -> None:
        self.log_results("test", self.compute_metrics(self.test_metrics))

    @staticmethod
    def compute_metrics(store: nn.ModuleDict) -> dict[str, dict[str, torch.Tensor]]:
        results = {}
        for name, metric in store.items():
            if metric.update_called:
                results[name] = metric.compute()
            metric.reset()
        return results

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
        return self.sr_for_eval(lr)

    def export_generator(self) -> nn.Module:
        """A standalone copy of the generator for export and inference (SRGAN: its EMA)."""
        return copy.deepcopy(self.net).eval()

    # -- checkpoints ------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Plain metadata so tools know what a checkpoint holds without rebuilding it."""
        checkpoint[CHECKPOINT_KEY] = {
            "method": self.method,
            "module": f"{type(self).__module__}.{type(self).__qualname__}",
            "scale": self.scale,
            "channels": self.channels,
        }
        # the epoch's loss so far, so that a run resumed mid-epoch logs the same epoch mean
        checkpoint[EPOCH_LOSS_KEY] = {
            "sum": None if self._loss_sum is None else self._loss_sum.detach().cpu(),
            "count": self._loss_count,
        }
        if self._psnr_best is not None:  # so that a resumed run knows its best so far
            checkpoint[CHECKPOINT_KEY][BEST_KEY] = float(self._psnr_best)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume the epoch's loss sums and ``val/psnr_best`` (the sweepers' objective)."""
        saved = checkpoint.get(EPOCH_LOSS_KEY) or {}
        self._loss_sum = saved.get("sum")
        self._loss_count = int(saved.get("count", 0))
        best = (checkpoint.get(CHECKPOINT_KEY) or {}).get(BEST_KEY)
        if best is None:  # written before the best was saved: the monitored best checkpoint
            best = next(
                (
                    state.get("best_model_score")
                    for key, state in (checkpoint.get("callbacks") or {}).items()
                    if "ModelCheckpoint" in str(key)
                    and isinstance(state, dict)
                    and state.get("monitor") == "val/psnr"
                    and state.get("best_model_score") is not None
                ),
                None,
            )
        finite = best is not None and math.isfinite(float(best))
        self._psnr_best = torch.tensor(float(best), dtype=torch.float64) if finite else None
