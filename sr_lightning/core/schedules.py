"""Learning-rate schedules that span a run's budget, whatever bounds it.

A paper's schedule is written in steps (ESPCN: decay when the loss plateaus; SRGAN: 1e-4 then
1e-5 after 1e5 of 2e5 updates). A run bounded by ``trainer.max_time`` knows no step count in
advance, so :class:`BudgetLR` sets the lr from the *fraction of the budget done*:

    progress = max(global_step / the run's step budget, train time elapsed / trainer.max_time)

where the step budget is ``trainer.max_steps`` or ``max_epochs`` × steps per epoch, whichever
ends first (Lightning's ``estimated_stepping_batches``), and the train time is that of
Lightning's ``Timer`` callback, the same clock that stops the run. The Timer saves its elapsed
time in checkpoints, so a resumed run continues the schedule where it stopped.

Shapes (``kind``): ``step`` multiplies the lr by ``gamma`` at each fraction in ``milestones``;
``cosine`` anneals from 1 to ``final`` (a fraction of the base lr); both after an optional
linear ``warmup`` over that fraction of the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from lightning.pytorch.callbacks import Timer
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

KINDS = ("step", "cosine")


def budget_factor(
    progress: float,
    kind: str = "step",
    milestones: Sequence[float] = (0.8,),
    gamma: float = 0.1,
    final: float = 0.0,
    warmup: float = 0.0,
) -> float:
    """The lr multiplier at ``progress`` (0 = start of the budget, 1 = its end)."""
    p = min(max(float(progress), 0.0), 1.0)
    if kind == "step":
        factor = gamma ** sum(p >= m for m in milestones)
    elif kind == "cosine":
        factor = final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        raise ValueError(f"model.scheduler.kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if warmup > 0 and p < warmup:
        factor *= (p + 1e-3) / (warmup + 1e-3)
    return factor


class BudgetLR(LRScheduler):
    """lr = base lr × :func:`budget_factor` (``progress()``); step it every training step.

    ``progress`` is given by the module (a :class:`BudgetProgress` of its trainer); it is not
    part of the state dict, which holds plain numbers only (checkpoints load with
    ``weights_only``).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        progress: Callable[[], float] | None = None,
        kind: str = "step",
        milestones: Sequence[float] = (0.8,),
        gamma: float = 0.1,
        final: float = 0.0,
        warmup: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(
                f"model.scheduler.kind must be one of {', '.join(KINDS)}; got {kind!r}"
            )
        bad = [m for m in milestones if not 0.0 < float(m) < 1.0]
        if bad:
            raise ValueError(
                f"model.scheduler.milestones are fractions of the budget in (0, 1); got {bad}"
            )
        self.progress = progress or (lambda: 0.0)
        self.kind = kind
        self.milestones = [float(m) for m in milestones]
        self.gamma = float(gamma)
        self.final = float(final)
        self.warmup = float(warmup)
        super().__init__(optimizer, last_epoch)

    def factor(self) -> float:
        return budget_factor(
            self.progress(), self.kind, self.milestones, self.gamma, self.final, self.warmup
        )

    def get_lr(self) -> list[float]:
        f = self.factor()
        return [base * f for base in self.base_lrs]

    def sync(self) -> None:
        """Set the lr for the progress now, without counting a step (used on resume)."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k != "progress"}


def is_budget_schedule(factory) -> bool:
    """Whether an instantiated ``_partial_`` scheduler config builds a :class:`BudgetLR`."""
    cls = getattr(factory, "func", factory)
    return isinstance(cls, type) and issubclass(cls, BudgetLR)


class BudgetProgress:
    """Fraction of the run's budget done, as ``progress`` of a :class:`BudgetLR`.

    Steps (``global_step`` over Lightning's ``estimated_stepping_batches``, which honours
    ``max_steps`` and ``max_epochs``; inf when unbounded) or train time (``trainer.max_time``,
    on Lightning's ``Timer``, resumed from checkpoints), whichever is further along.
    ``trainer`` returns the Trainer the module is attached to, or None (progress 0).
    """

    def __init__(self, trainer: Callable[[], Any]) -> None:
        self.trainer = trainer
        self.budget_steps: float | None = None  # the step budget, read once

    def __call__(self) -> float:
        trainer = self.trainer()
        if trainer is None:
            return 0.0
        if self.budget_steps is None:
            if trainer.train_dataloader is None:
                # configure_optimizers runs before the loader exists; Lightning's estimate
                # would build it early (ahead of a resumed loader's state): the first step
                # is at progress 0 anyway, and the module re-syncs a resumed run on train start
                return 0.0
            self.budget_steps = float(trainer.estimated_stepping_batches)
        steps = self.budget_steps
        done = trainer.global_step / steps if math.isfinite(steps) else 0.0
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is not None:
            elapsed = timer.time_elapsed()
            done = max(done, elapsed / max(elapsed + remaining, 1e-9))
        return min(done, 1.0)
