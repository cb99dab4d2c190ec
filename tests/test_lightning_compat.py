"""Lightning's private internals we use exist in the installed Lightning, which lies in the
range pyproject.toml allows and lightning_compat says they are tested on."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

import lightning
import pytest
import tomllib
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.strategies import DDPStrategy
from packaging.requirements import Requirement

from sr_lightning.runtime import lightning_compat as compat


def test_pyproject_allows_exactly_the_tested_lightning_range_and_it_is_installed() -> None:
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    (spec,) = [r.specifier for r in reqs if r.name == "lightning"]
    assert str(spec) == str(Requirement(f"lightning{compat.TESTED_LIGHTNING}").specifier)
    assert spec.contains(lightning.__version__)


def test_ddp_kwargs_are_the_strategys_own_mutable_dict() -> None:
    strategy = DDPStrategy(find_unused_parameters=False)
    compat.ddp_kwargs(strategy)["find_unused_parameters"] = True
    assert strategy._ddp_kwargs["find_unused_parameters"] is True
    with pytest.raises(RuntimeError, match="_ddp_kwargs"):
        compat.ddp_kwargs(object())


def test_optimizer_step_hooks_run_around_each_step() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = LightningOptimizer(torch.optim.SGD([param], lr=1.0))
    calls = []

    class Strategy:  # what a Trainer's strategy does with the step: run the real optimizer
        def optimizer_step(self, optimizer, closure, **kwargs):
            calls.append("step")
            return optimizer.step(closure)

    opt._strategy = Strategy()
    compat.set_optimizer_step_hooks(
        opt, lambda: calls.append("before"), lambda: calls.append("after")
    )
    param.grad = torch.ones(1)
    opt.step()
    assert calls == ["before", "step", "after"] and float(param) == -1.0


def test_the_hydra_rank_command_can_be_replaced(monkeypatch) -> None:
    for name in compat._LAUNCHER_MODULES:
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "_hydra_subprocess_cmd", module._hydra_subprocess_cmd)
    marker = object()
    assert compat.replace_hydra_subprocess_cmd(marker) == []
    assert all(
        importlib.import_module(n)._hydra_subprocess_cmd is marker for n in compat._LAUNCHER_MODULES
    )


def test_logged_results_are_empty_without_a_collection() -> None:
    assert list(compat.logged_results(object())) == []


def test_attached_trainer_is_none_until_a_trainer_holds_the_module() -> None:
    module = LightningModule()
    assert compat.attached_trainer(module) is None
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module.trainer = trainer
    assert compat.attached_trainer(module) is trainer


def test_forget_step_metrics_resets_only_the_prefixed_entries() -> None:
    def entry(name):
        return SimpleNamespace(meta=SimpleNamespace(name=name), has_reset=False)

    results = {k: entry(k) for k in ("train/g_adv", "train/g_loss", "train/d_loss")}
    compat.forget_step_metrics(SimpleNamespace(_results=results), "train/g_")
    assert {k: v.has_reset for k, v in results.items()} == {
        "train/g_adv": True,
        "train/g_loss": True,
        "train/d_loss": False,
    }


class EpochLoop:
    def __init__(self, ready: bool) -> None:
        self.ready, self.calls = ready, []

    def _num_ready_batches_reached(self) -> bool:
        return self.ready

    def update_lr_schedulers(self, interval: str, update_plateau_schedulers: bool) -> None:
        self.calls.append((interval, update_plateau_schedulers))


@pytest.mark.parametrize(
    "restarting,ready,stepped", [(True, True, True), (True, False, False), (False, True, False)]
)
def test_epoch_schedulers_step_only_at_the_end_of_an_epoch_resumed_into(
    restarting, ready, stepped
) -> None:
    loop = EpochLoop(ready)
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(restarting=restarting, epoch_loop=loop))
    compat.step_schedulers_skipped_on_resume(trainer)
    assert loop.calls == ([("epoch", True)] if stepped else [])


def test_the_resume_patch_names_what_a_lightning_release_lacks() -> None:
    for name in ("_num_ready_batches_reached", "update_lr_schedulers"):
        assert callable(getattr(_TrainingEpochLoop, name)), name
    loop = SimpleNamespace(update_lr_schedulers=lambda *a, **k: None)
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(restarting=True, epoch_loop=loop))
    with pytest.raises(RuntimeError, match="_num_ready_batches_reached"):
        compat.step_schedulers_skipped_on_resume(trainer)
