"""Lightning's private internals we use exist in the installed Lightning, which lies in the
range pyproject.toml allows and lightning_compat says they are tested on."""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning
import pytest
import tomllib
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
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
