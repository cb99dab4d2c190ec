"""What a training module aggregates across steps and keeps across checkpoints: the epoch's
mean training loss (and the NaN/Inf guard on it) and the best ``val/psnr`` so far.

Both are torchmetrics aggregators, child modules of the training module whose states stay out
of its ``state_dict`` (so ``state_dict`` keys are only the nets'). They travel in checkpoints
under their own keys, in the plain format they have always had, so older checkpoints resume:

* ``checkpoint["sr_lightning_epoch_loss"] = {"sum": tensor | None, "count": int}``, the
  sample-weighted sum of the epoch's losses so far and its sample count: a run resumed
  mid-epoch logs the same ``train/loss_epoch`` as one that never stopped;
* ``checkpoint["sr_lightning"]["val_psnr_best"] = float``: the sweepers' objective. A
  checkpoint written before it existed gives the best score of its ``val/psnr``
  ``ModelCheckpoint`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torchmetrics.aggregation import MaxMetric, MeanMetric

EPOCH_LOSS_KEY = "sr_lightning_epoch_loss"
# the best val/psnr so far, in the checkpoint metadata (checkpoint["sr_lightning"])
BEST_KEY = "val_psnr_best"


class EpochLoss(MeanMetric):
    """The epoch's training loss: sums on the device, read back only when asked.

    ``update`` adds a batch's mean loss for its ``batch_size`` samples with no NaN check:
    torchmetrics' checks read the value back (a GPU sync every step), and its
    ``nan_strategy="disable"`` drops the weight (torchmetrics 1.9). A NaN or Inf loss makes
    the sum non-finite, which :meth:`finite` tells. The mean is this rank's
    (``sync_on_compute=False``); the module logs it with ``sync_dist=True``.
    """

    def __init__(self) -> None:
        super().__init__(nan_strategy="disable", sync_on_compute=False)

    def update(self, value: torch.Tensor, weight: int) -> None:  # type: ignore[override]
        self.mean_value += value.detach().to(self.mean_value.dtype) * weight
        self.weight += weight

    @property
    def count(self) -> int:
        """Samples summed so far (a read-back)."""
        return int(self.weight)

    def mean(self) -> torch.Tensor:
        """The mean so far; unlike ``compute`` it does not warn right after a restore."""
        return self.mean_value / self.weight

    def finite(self) -> bool:
        """False once any loss summed since the last reset was NaN or Inf (a read-back)."""
        return bool(torch.isfinite(self.mean_value))

    def check(self, when: str, terms: Mapping[str, torch.Tensor] | None = None) -> None:
        """Stop if any loss summed since the last reset was NaN/Inf (``when``: the step),
        naming the non-finite ``terms`` of the loss at hand."""
        if not self.finite():
            raise FloatingPointError(nonfinite_message(terms, when))

    def checkpoint_state(self) -> dict:
        count = self.count
        return {"sum": self.mean_value.detach().cpu() if count else None, "count": count}

    def load_checkpoint_state(self, saved: Mapping | None) -> None:
        self.reset()
        saved = saved or {}
        if saved.get("sum") is not None and int(saved.get("count", 0)):
            state = self.mean_value
            self.merge_state(
                {
                    "mean_value": saved["sum"].to(device=state.device, dtype=state.dtype),
                    "weight": torch.tensor(float(saved["count"]), device=state.device),
                }
            )


class BestScore(MaxMetric):
    """The best score so far, in float64: the best ``val/psnr`` equals, bit for bit, the
    ``val/psnr`` (float64) of the epoch it comes from.

    A NaN score (a diverged epoch) does not wipe out the best (``nan_strategy="ignore"``).
    The scores are already reduced over ranks, so ``compute`` does not sync again.
    """

    def __init__(self) -> None:
        super().__init__(nan_strategy="ignore", sync_on_compute=False)
        self.set_dtype(torch.float64)

    @property
    def dtype(self) -> torch.dtype:
        """float64 always: ``update`` casts each score to this, and a Trainer that moves the
        module can reset torchmetrics' own dtype to float32 (val/psnr_best would then be the
        float32 rounding of val/psnr)."""
        return torch.float64

    def _apply(self, fn: Callable, *args: Any, **kwargs: Any) -> BestScore:
        # a Trainer at precision 16-true / bf16-true casts the module (Module.to(dtype)), which
        # casts metric states too; the best stays float64 (set_dtype comes back here, once)
        this = super()._apply(fn, *args, **kwargs)
        if this.max_value.dtype != torch.float64:
            this.set_dtype(torch.float64)
        return this

    def add(self, score: torch.Tensor) -> torch.Tensor:
        """Update with ``score``; the best so far, or ``score`` itself while no score was a
        number (a NaN, as ``torch.fmax`` over NaNs gives)."""
        self.update(score)
        return score if self.value() is None else self.compute()

    def value(self) -> float | None:
        """The best so far as a float; None before any score that is a number."""
        best = float(self.max_value)
        return None if best == -math.inf else best

    def restore(self, best: float | None) -> None:
        """Start from a best read from a checkpoint (a non-finite one is ignored)."""
        self.reset()
        if best is not None and math.isfinite(float(best)):
            self.update(torch.tensor(float(best), dtype=torch.float64, device=self.device))


def save_tracking(checkpoint: dict, metadata_key: str, epoch: EpochLoss, best: BestScore) -> None:
    """Write the epoch's loss so far and the best score into ``checkpoint``."""
    checkpoint[EPOCH_LOSS_KEY] = epoch.checkpoint_state()
    value = best.value()
    if value is not None:  # so that a resumed run knows its best so far
        checkpoint[metadata_key][BEST_KEY] = value


def load_tracking(checkpoint: dict, metadata_key: str, epoch: EpochLoss, best: BestScore) -> None:
    """Restore what :func:`save_tracking` wrote; for an older checkpoint without the best, the
    best score of its ``val/psnr`` ModelCheckpoint."""
    epoch.load_checkpoint_state(checkpoint.get(EPOCH_LOSS_KEY))
    value = (checkpoint.get(metadata_key) or {}).get(BEST_KEY)
    if value is None:
        value = next(
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
    best.restore(None if value is None else float(value))


def check_finite(loss: torch.Tensor, terms: Mapping[str, torch.Tensor], step: int) -> None:
    """Stop on a NaN/Inf loss with the step and the offending term, not silently diverge."""
    if torch.isfinite(loss):
        return
    raise FloatingPointError(nonfinite_message(terms, f"at global step {step}"))


def nonfinite_message(terms: Mapping[str, torch.Tensor] | None, when: str) -> str:
    bad = [k for k, v in (terms or {}).items() if not torch.isfinite(v)] or ["total"]
    return (
        f"non-finite loss {when} (term: {', '.join(bad)}). "
        "Lower the learning rate, enable gradient clipping, or check the data."
    )
