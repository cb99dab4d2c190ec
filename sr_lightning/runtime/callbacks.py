"""Lightning callbacks for SR runs: validation image panels and a per-image results table.

They serve whatever loggers the run has: W&B (images and a ``wandb.Table``), TensorBoard
(images and a Markdown table), and otherwise (CSV logging) PNG and CSV files in the run dir.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image

from sr_lightning.common.pixels import quantize
from sr_lightning.core.metrics import ImageScores, score_images
from sr_lightning.data.degradation import bicubic_upscale

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("set", "image", "psnr", "ssim", "psnr_bicubic", "gain")


class ImagePanels(Callback):
    """Bicubic | SR | HR side by side for a fixed set of validation images, and per-image metrics.

    On validation epochs ``every_n_epochs``, ``2·every_n_epochs``, ..., the last epoch, and in a
    validate-only run:

    * a panel per chosen image of the first validation set: the first ``num_images`` images,
      or those named in ``images`` (file names or stems); the same images every time, so runs
      and epochs can be compared side by side;
    * with ``table``, a row per validation image (every set): Y PSNR and SSIM with the papers'
      border crop, the bicubic PSNR and the gain over it.

    W&B gets ``val_images/<set>/<image>`` and the table ``val/per_image``; TensorBoard the same
    tags (the table as text). With neither logger the panels are PNGs and the table a CSV in
    ``dirpath/epochNNN/``. Under DDP each rank works on its own images and rank 0 logs them all.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        num_images: int = 3,
        images: Sequence[str] | None = None,
        table: bool = True,
        dirpath: str | None = None,
        gap: int = 4,
    ) -> None:
        if int(every_n_epochs) < 1:
            raise ValueError(
                f"callbacks.image_panels.every_n_epochs={every_n_epochs}: must be >= 1"
            )
        self.every_n_epochs = int(every_n_epochs)
        self.num_images = int(num_images)
        self.images = {str(name) for name in images} if images else None
        self.table = bool(table)
        self.dirpath = dirpath
        self.gap = int(gap)
        self._active = False
        self._panels: list[tuple[int, str, str, np.ndarray]] = []
        self._rows: list[dict[str, Any]] = []

    # -- when -------------------------------------------------------------------------------

    def is_due(self, trainer: Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn != TrainerFn.FITTING:
            return True
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epoch
        return epoch % self.every_n_epochs == 0 or last

    def wants_panel(self, index: int, name: str) -> bool:
        if self.images is not None:
            return name in self.images or Path(name).stem in self.images
        return index < self.num_images

    # -- collect ----------------------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._active = self.is_due(trainer)
        self._panels, self._rows = [], []

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active or not isinstance(batch, Mapping) or "lr" not in batch:
            return
        outputs = outputs if isinstance(outputs, Mapping) else {}
        scale, hr = int(pl_module.scale), batch["hr"]
        sr = outputs["sr"] if "sr" in outputs else pl_module(batch["lr"], net=pl_module.generator)
        bicubic = outputs.get("bicubic")
        if bicubic is None:
            bicubic = bicubic_upscale(batch["lr"], scale)
        set_names = pl_module.eval_set_names("val")
        set_name = set_names[dataloader_idx] if dataloader_idx < len(set_names) else "val"
        names = _as_list(batch.get("name"), len(hr))
        indices = [
            int(i) if i is not None else batch_idx for i in _as_list(batch.get("index"), len(hr))
        ]
        if self.table:
            # validation's own per-image scores (SRMetrics.score); the same protocol otherwise
            scores = _scores(outputs.get("scores"), sr, hr, scale)
            bicubic_scores = _scores(outputs.get("bicubic_scores"), bicubic, hr, scale)
            for i, ((psnr, ssim), (psnr_bicubic, _)) in enumerate(
                zip(scores.rows(), bicubic_scores.rows(), strict=True)
            ):
                self._rows.append(
                    {
                        "loader": dataloader_idx,
                        "index": indices[i],
                        "set": set_name,
                        "image": str(names[i]),
                        "psnr": psnr,
                        "ssim": ssim,
                        "psnr_bicubic": psnr_bicubic,
                        "gain": psnr - psnr_bicubic,
                    }
                )
        if dataloader_idx != 0:
            return
        for i in range(len(hr)):
            if self.wants_panel(indices[i], str(names[i])):
                panel = side_by_side([bicubic[i], sr[i], hr[i]], self.gap)
                self._panels.append((indices[i], set_name, str(names[i]), panel))

    # -- log --------------------------------------------------------------------------------

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active:
            return
        panels = sorted(gather(self._panels), key=lambda p: p[0])
        rows = sorted(gather(self._rows), key=lambda r: (r["loader"], r["index"]))
        self._panels, self._rows, self._active = [], [], False
        if trainer.is_global_zero:
            self.publish(trainer, panels, rows)

    def publish(
        self,
        trainer: Trainer,
        panels: list[tuple[int, str, str, np.ndarray]],
        rows: list[dict[str, Any]],
    ) -> None:
        step, epoch = trainer.global_step, trainer.current_epoch
        table = [[row[c] for c in TABLE_COLUMNS] for row in rows]
        served = False
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                payload: dict[str, Any] = {
                    f"val_images/{s}/{Path(n).stem}": wandb.Image(p, caption="bicubic | SR | HR")
                    for _, s, n, p in panels
                }
                if table:
                    payload["val/per_image"] = wandb.Table(columns=list(TABLE_COLUMNS), data=table)
                logger.experiment.log({**payload, "trainer/global_step": step})
                served = True
            elif isinstance(logger, TensorBoardLogger):
                writer = logger.experiment
                for _, s, n, p in panels:
                    writer.add_image(f"val_images/{s}/{Path(n).stem}", p, step, dataformats="HWC")
                if table:
                    writer.add_text("val/per_image", markdown_table(table), step)
                served = True
        if not served:
            self.write_files(trainer, epoch, panels, table)

    def write_files(
        self,
        trainer: Trainer,
        epoch: int,
        panels: list[tuple[int, str, str, np.ndarray]],
        table: list[list[Any]],
    ) -> None:
        """Panels as PNGs and the table as CSV under ``dirpath/epochNNN/``."""
        root = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "images"
        folder = root / f"epoch{epoch:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for _, set_name, name, panel in panels:
            Image.fromarray(panel).save(folder / f"{set_name}_{Path(name).stem}.png")
        if table:
            with open(folder / "per_image.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(TABLE_COLUMNS)
                writer.writerows(table)


class SyncEvalBuffers(Callback):
    """Under DDP, evaluate on every rank with rank 0's buffers (BN running statistics, EMA).

    DDP keeps parameters equal across ranks, but buffers only when it broadcasts them in its
    forward, which manual optimization (SRGAN) skips, and BN statistics drift per rank without
    SyncBatchNorm (unavailable on CPU). Rank 0's model is the one checkpointed; broadcasting
    its buffers before validation and test makes the DDP metrics exactly that model's.
    """

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        broadcast_buffers(pl_module)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        broadcast_buffers(pl_module)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every floating-point and integer buffer of ``module`` from rank ``src`` (no-op
    without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)


def side_by_side(images: Sequence[torch.Tensor], gap: int = 4) -> np.ndarray:
    """(C, H, W) float images in [0, 1] -> one uint8 RGB (H, W·n + gaps, 3) array.

    Images are rounded to 8 bits as the metrics see them; grey (luma) images are shown grey.
    """
    arrays = []
    for image in images:
        image = quantize(image.detach().float().cpu())
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        arrays.append((image * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy())
    height = arrays[0].shape[0]
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    parts = []
    for i, array in enumerate(arrays):
        parts += [spacer, array] if i else [array]
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def markdown_table(table: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in table:
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gather(items: list) -> list:
    """Every rank's items, on every rank (the list itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    parts: list[list | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in (part or [])]


def _scores(given: Any, sr: torch.Tensor, hr: torch.Tensor, scale: int) -> ImageScores:
    """The per-image scores validation returned, else those of the same protocol."""
    return given if isinstance(given, ImageScores) else score_images(sr, hr, scale)


def _as_list(value: Any, n: int) -> list:
    """A batch field as one value per image (evaluation batches hold plain values)."""
    if isinstance(value, torch.Tensor):
        return value.reshape(-1).tolist() if value.numel() == n else [None] * n
    if isinstance(value, list | tuple) and len(value) == n:
        return list(value)
    return [value] * n if n == 1 else [None] * n
