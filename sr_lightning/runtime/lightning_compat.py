"""Every use of Lightning's private internals, in one place.

SRGAN's manual optimization and DDP, exact mid-epoch resume, Hydra-launched DDP ranks and
modules used without a Trainer need a few things Lightning keeps private. They are reached
only through these functions, which fail with a message naming the missing piece (not deep
inside a training step) when a Lightning release renames one. pyproject.toml allows the Lightning versions they are tested on:
``TESTED_LIGHTNING``; widen both together after running the tests on a new release.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

TESTED_LIGHTNING = ">=2.6,<2.7"

# where Lightning builds the command that starts DDP ranks under Hydra
_LAUNCHER_MODULES = (
    "lightning.fabric.strategies.launchers.subprocess_script",
    "lightning.pytorch.strategies.launchers.subprocess_script",
)


def ddp_kwargs(strategy: Any) -> dict:
    """The kwargs a ``DDPStrategy`` hands to ``DistributedDataParallel`` (mutable until its
    ``setup``), e.g. to turn on ``find_unused_parameters``."""
    kwargs = getattr(strategy, "_ddp_kwargs", None)
    if not isinstance(kwargs, dict):
        raise RuntimeError(
            f"this Lightning version's {type(strategy).__name__} has no _ddp_kwargs (tested: "
            f"lightning{TESTED_LIGHTNING}); pass trainer.strategy=ddp_find_unused_parameters_true"
        )
    return kwargs


def set_optimizer_step_hooks(
    optimizer: Any, before: Callable[[], Any], after: Callable[[], Any]
) -> None:
    """Replace a ``LightningOptimizer``'s per-step hooks (the manual loop's step counter)."""
    if not hasattr(optimizer, "_on_before_step") or not hasattr(optimizer, "_on_after_step"):
        raise RuntimeError(
            "this Lightning version's LightningOptimizer has no _on_before_step/_on_after_step "
            f"hooks (tested: lightning{TESTED_LIGHTNING})"
        )
    optimizer._on_before_step = before
    optimizer._on_after_step = after


def logged_results(trainer: Any) -> Iterator[Any]:
    """The result entries of the values logged so far in this loop (``trainer._results``);
    none when the trainer keeps no such collection."""
    results = getattr(trainer, "_results", None)
    yield from (results or {}).values()


def attached_trainer(module: Any) -> Any:
    """The Trainer a LightningModule is attached to, or None (``module.trainer`` raises when
    there is none: a module built for inference, or tested on its own)."""
    return getattr(module, "_trainer", None)


def forget_step_metrics(trainer: Any, prefix: str) -> None:
    """Mark the logged step values whose name starts with ``prefix`` as reset.

    Lightning re-sends every step metric of the epoch at each later step until it is logged
    again; marking an entry reset (what Lightning does at an epoch's end) leaves later rows
    without it until it is logged anew.
    """
    for item in logged_results(trainer):
        meta = getattr(item, "meta", None)
        if meta is not None and meta.name.startswith(prefix) and hasattr(item, "has_reset"):
            item.has_reset = True


def step_schedulers_skipped_on_resume(trainer: Any) -> None:
    """Step the epoch-interval schedulers at the end of an epoch this run resumed into.

    Lightning 2.6 skips them there (``FitLoop.on_advance_end`` steps only when not
    ``restarting``), so a run resumed mid-epoch would keep one epoch's LR too long and drift
    from the run that never stopped. Call it from ``on_train_epoch_end`` of an automatically
    optimized module, after logging what plateau schedulers monitor: everything they read
    (the optimizer, the scheduler, the epoch's loss) is restored from the checkpoint.
    """
    fit_loop = trainer.fit_loop
    epoch_loop = fit_loop.epoch_loop
    for name in ("_num_ready_batches_reached", "update_lr_schedulers"):
        if not hasattr(epoch_loop, name):
            raise RuntimeError(
                f"this Lightning version's training epoch loop has no {name} (tested: "
                f"lightning{TESTED_LIGHTNING}); exact mid-epoch resume needs it"
            )
    if fit_loop.restarting and epoch_loop._num_ready_batches_reached():
        epoch_loop.update_lr_schedulers("epoch", update_plateau_schedulers=True)


def replace_hydra_subprocess_cmd(command: Callable[..., Any]) -> list[str]:
    """Make Lightning's subprocess launchers build rank commands with ``command`` (private
    ``_hydra_subprocess_cmd``, same signature since Lightning 1.6); the modules lacking it."""
    missing = []
    for name in _LAUNCHER_MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, "_hydra_subprocess_cmd"):
            missing.append(name)
            continue
        module._hydra_subprocess_cmd = command
    return missing
