"""The data module's batches under ``degradation=``, with seeds kept in checkpoints.

:class:`SeededLR` is mixed into :class:`~sr_lightning.data.datamodule.SRDataModule`: it turns
a uint8 HR training batch into ``{"lr", "hr", "scale"}`` (flips / rotations, then the LR
model) and an evaluation image into its pair (:func:`~sr_lightning.data.eval_pair.eval_pair`).
A random
degradation seeds sample ``i`` of training batch ``b`` on rank ``r`` with
``mix(run seed, r, b, i)``; ``b`` counts the batches degraded so far and is part of the data
module's state (``state_dict``, saved in every checkpoint), so a resumed run draws exactly what
the uninterrupted run would have drawn.
"""

from __future__ import annotations

import torch

from sr_lightning.common.color import to_luma_uint8
from sr_lightning.data.degradation import degrade_train, random_dihedral, to_float
from sr_lightning.data.degradations.model import Degradation
from sr_lightning.data.degradations.seeding import sample_seeds
from sr_lightning.data.eval_pair import eval_pair

__all__ = ["SeededLR", "luma_of", "stored_channels"]


def stored_channels(lr_model: Degradation, channels: int, evaluation: bool) -> int | None:
    """The colour space a set is decoded into (``None``: as the file holds it, grey or RGB).

    BD / DN / Real-ESRGAN degrade the image before a luma model's luma is taken: training sets
    are kept in RGB (a grey image replicated, so crops batch together), evaluation sets as
    decoded, so that ``eval_pair`` degrades a grey image as grey, as ``sr-eval`` does.
    """
    if not lr_model.needs_rgb:
        return channels
    return None if evaluation else 3


def luma_of(x: torch.Tensor) -> torch.Tensor:
    """The MATLAB luma (uint8 ``rgb2ycbcr``) of a float RGB batch on 8-bit levels, as float."""
    return to_luma_uint8(torch.round(x * 255.0).to(torch.uint8)).float().div_(255.0)


class SeededLR:
    """Training and evaluation batches of ``lr_model`` (a mixin: the data module gives
    ``scale``, ``channels``, ``augment`` and ``draw_scale``)."""

    lr_model: Degradation = Degradation()
    scale: int = 3
    channels: int = 1
    augment: dict
    degraded_batches: int = 0

    def draw_scale(self) -> int:
        raise NotImplementedError

    def make_train_batch(self, hr_uint8: torch.Tensor) -> dict:
        hr = random_dihedral(to_float(hr_uint8), **self.augment)
        scale = self.draw_scale()
        if self.lr_model.name != "bicubic":
            return self.degrade_batch(hr, scale)
        return {"lr": degrade_train(hr, scale), "hr": hr, "scale": scale}

    def make_eval_batch(self, batch: dict) -> dict:
        """A uint8 HR image (in the model's colour space, or as decoded for a degradation)
        -> the evaluation pair, as ``sr-eval`` makes it from the file; a paired set's batch
        carries its given ``lr``. Converting an image already in the model's colour space
        changes nothing (a grey image is its own luma)."""
        image, name = batch["hr"], str(batch["name"])
        hr, lr = eval_pair(image, self.scale, self.channels, self.lr_model, [name], batch.get("lr"))
        return {**batch, "hr": hr, "lr": lr, "scale": self.scale}

    def state_dict(self) -> dict:
        return {"degraded_batches": self.degraded_batches}

    def load_state_dict(self, state: dict) -> None:
        self.degraded_batches = int(state.get("degraded_batches", 0))

    def batch_seeds(self, count: int) -> list[int]:
        """One seed per sample of the next training batch: (run seed, rank, batch, place)."""
        trainer = getattr(self, "trainer", None)
        rank = trainer.global_rank if trainer is not None else 0
        batch = self.degraded_batches
        self.degraded_batches += 1
        # torch.initial_seed() is the run's seed after seed_everything
        return sample_seeds(torch.initial_seed(), rank, batch, count=count)

    def degrade_batch(self, hr: torch.Tensor, scale: int) -> dict:
        """``{"lr", "hr", "scale"}`` of a float HR batch; RGB kept for BD / DN / Real-ESRGAN
        becomes the model's luma after the degradation."""
        lr = self.lr_model.train_lr(hr, scale, self.batch_seeds(hr.shape[0]))
        if hr.shape[1] != self.channels:
            hr, lr = luma_of(hr), luma_of(lr)
        return {"lr": lr, "hr": hr, "scale": scale}
