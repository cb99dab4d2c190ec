"""Budget schedules: the lr follows the fraction of max_steps / max_time done, across resumes."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.callbacks import timer as timer_module

from sr_lightning.core.builders import build_datamodule, build_module
from sr_lightning.core.schedules import BudgetLR, BudgetProgress, budget_factor
from tests.helpers.config import tiny_overrides


def test_budget_factor_matches_the_step_and_cosine_formulas() -> None:
    assert budget_factor(0.69, "step", [0.7, 0.9], 0.1) == 1.0
    assert budget_factor(0.7, "step", [0.7, 0.9], 0.1) == pytest.approx(0.1)
    assert budget_factor(0.95, "step", [0.7, 0.9], 0.1) == pytest.approx(0.01)
    for p in (0.0, 0.3, 0.5, 1.0):
        expected = 0.01 + 0.99 * (1 + math.cos(math.pi * p)) / 2
        assert budget_factor(p, "cosine", final=0.01) == pytest.approx(expected)
    # warmup ramps up to the schedule's value, then leaves it alone
    assert budget_factor(0.0, "step", warmup=0.1) < 0.02
    assert budget_factor(0.05, "step", warmup=0.1) == pytest.approx(0.051 / 0.101)
    assert budget_factor(0.2, "step", warmup=0.1) == 1.0
    with pytest.raises(ValueError, match="kind"):
        budget_factor(0.5, "linear")


def test_budget_lr_state_is_plain_and_milestones_are_checked() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = BudgetLR(opt, progress=lambda: 0.75, milestones=[0.5])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    assert "progress" not in torch.load(buffer, weights_only=True)
    with pytest.raises(ValueError, match="fractions of the budget"):
        BudgetLR(opt, milestones=[80])


def test_budget_progress_is_the_further_of_steps_and_train_time() -> None:
    timer = Timer(duration={"seconds": 100})
    elapsed = {"s": 60.0}
    timer.time_elapsed = lambda stage="train": elapsed["s"]
    timer.time_remaining = lambda stage="train": 100.0 - elapsed["s"]
    trainer = SimpleNamespace(
        train_dataloader=None, estimated_stepping_batches=200, global_step=50, callbacks=[timer]
    )
    progress = BudgetProgress(lambda: trainer)
    assert progress() == 0.0  # before the loader exists (configure_optimizers): the start
    assert progress.budget_steps is None  # and Lightning's estimate is not read yet
    trainer.train_dataloader = object()
    assert progress() == 60 / 100  # time is further along than 50 / 200 steps
    trainer.global_step, elapsed["s"] = 180, 10.0
    assert progress() == 180 / 200
    trainer.estimated_stepping_batches = 10  # read once: the budget of this run stays
    assert progress() == 180 / 200
    trainer.global_step = 250
    assert progress() == 1.0  # never past the end
    assert BudgetProgress(lambda: None)() == 0.0  # a module on no trainer
    unbounded = SimpleNamespace(
        train_dataloader=object(), estimated_stepping_batches=math.inf, global_step=9, callbacks=[]
    )
    assert BudgetProgress(lambda: unbounded)() == 0.0


def test_max_steps_budget_decays_at_its_fractions(compose_train, tiny_data) -> None:
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        "model.scheduler.milestones=[0.5]",
        "model.last_layer_lr_mult=1.0",
    )
    lrs = []

    class Record(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            lrs.append(optimizer.param_groups[0]["lr"])

    trainer = Trainer(max_steps=10, max_epochs=-1, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[Record()])  # fmt: skip
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    lr = cfg.model.optimizer.lr
    assert lrs == pytest.approx([lr] * 5 + [lr * 0.1] * 5)


class LrClock(Callback):
    """Each step's lr and the Timer's fraction of the budget; stops the run at ``stop_at``.

    Every training step advances the (patched) monotonic clock by ``tick`` seconds, so the
    test does not depend on how fast this machine runs a step.
    """

    def __init__(self, clock: SimpleNamespace, tick: float, stop_at: float | None = None):
        self.clock, self.tick, self.stop_at = clock, tick, stop_at
        self.rows: list[tuple[float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        timer = next(c for c in trainer.callbacks if isinstance(c, Timer))
        elapsed = timer.time_elapsed()
        fraction = elapsed / (elapsed + timer.time_remaining())
        self.rows.append((fraction, trainer.optimizers[0].param_groups[0]["lr"]))
        if self.stop_at is not None and fraction >= self.stop_at:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.now += self.tick


def test_max_time_schedule_ends_at_its_final_lr_and_survives_a_resume(
    compose_train, tiny_data, tmp_path, monkeypatch
) -> None:
    # Lightning's Timer reads time.monotonic(); here it reads a clock that steps advance
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(timer_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    budget, tick = 4.0, 0.1  # 40 steps of budget
    cfg = compose_train(
        *tiny_overrides(tiny_data),
        "model.scheduler.milestones=[0.6]",
        "model.last_layer_lr_mult=1.0",
    )
    lr = cfg.model.optimizer.lr

    def fit(callback: LrClock, ckpt_path=None) -> Trainer:
        trainer = Trainer(max_time={"seconds": budget}, max_epochs=-1, limit_val_batches=0,
                          logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, callbacks=[callback])  # fmt: skip
        module, data = build_module(cfg), build_datamodule(cfg)
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        return trainer

    first = LrClock(clock, tick, stop_at=0.3)
    trainer = fit(first)
    ckpt = tmp_path / "interrupted.ckpt"
    trainer.save_checkpoint(ckpt)
    assert trainer.global_step == 13  # fractions 0, 0.025, ..., 0.3
    assert all(r == pytest.approx(lr) for _, r in first.rows)  # still before the decay
    clock.now += 3600.0  # an hour in the queue: wall time that is not training time

    second = LrClock(clock, tick)
    trainer = fit(second, ckpt)
    fractions = [f for f, _ in second.rows]
    # the resumed run continues the Timer's clock where the first stopped, not from zero
    assert fractions[0] == pytest.approx(13 * tick / budget)
    assert trainer.global_step == 40  # and stops at the end of the same budget
    for f, r in second.rows:
        # the lr a step uses was set after the previous step, one tick earlier
        assert r == pytest.approx(lr * (0.1 if f - tick / budget >= 0.6 - 1e-9 else 1.0)), f
    assert second.rows[-1][1] == pytest.approx(lr * 0.1)  # the final lr, at the budget's end
