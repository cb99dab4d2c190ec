"""Building a module's parts from its plain config dicts: the loss terms, the optimizer's
parameter groups, the optimizer and the lr scheduler.

The modules keep their training logic; what they train with is made here, from the same
``_target_`` / ``_partial_`` dicts a checkpoint's hyperparameters hold, so a checkpoint
rebuilds the exact model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from sr_lightning.core.schedules import is_budget_schedule
from sr_lightning.losses.pixel import PixelLoss

# the loss of a config without a `loss` node: MSE, as every PSNR-oriented paper
DEFAULT_LOSS = {"pixel": {"kind": "mse", "weight": 1.0}}


def build_content_loss(cfg: Mapping | None) -> tuple[nn.Module | None, float]:
    """The VGG content loss and its weight; (None, 0) when the term is off."""
    if not cfg or not float(cfg.get("weight", 0.0)):
        return None, 0.0
    from sr_lightning.losses.content import VGGContentLoss

    kwargs = {k: v for k, v in cfg.items() if k != "weight"}
    return VGGContentLoss(**kwargs), float(cfg["weight"])


def build_losses(cfg: Mapping | None) -> tuple[nn.Module, float, nn.Module | None, float]:
    """``(pixel loss, its weight, content loss or None, its weight)`` from the ``loss`` node.

    A ``loss`` node without ``pixel`` has no pixel term (weight 0); no ``loss`` node at all
    is :data:`DEFAULT_LOSS`. A node with a ``_target_`` is the user's own loss module, called
    as ``loss(sr, hr)`` for a scalar: it takes the pixel term's place, at weight 1.
    """
    if cfg and "_target_" in cfg:
        user_loss = instantiate(dict(cfg))
        if not isinstance(user_loss, nn.Module):
            raise TypeError(
                f"loss._target_={cfg['_target_']} built a {type(user_loss).__name__}; a loss "
                "must be an nn.Module called as loss(sr, hr) that returns a scalar"
            )
        return user_loss, 1.0, None, 0.0
    loss = dict(cfg or DEFAULT_LOSS)
    pixel = loss.get("pixel") or {"kind": "mse", "weight": 0.0}
    content_loss, content_weight = build_content_loss(loss.get("content"))
    return (
        PixelLoss(pixel.get("kind", "mse")),
        float(pixel.get("weight", 1.0)),
        content_loss,
        content_weight,
    )


def net_parameter_groups(
    net: nn.Module, last_layer_lr_mult: float, optimizer: Mapping
) -> list[dict]:
    """All trainable parameters of ``net``; its last layer at ``last_layer_lr_mult`` × the
    ``optimizer`` config's lr."""
    params = [p for p in net.parameters() if p.requires_grad]
    mult = float(last_layer_lr_mult)
    if mult == 1.0 or not hasattr(net, "last_layer_parameters"):
        return [{"params": params}]
    last = {id(p) for p in net.last_layer_parameters()}
    lr = float(optimizer["lr"])
    return [
        {"params": [p for p in params if id(p) not in last]},
        {"params": [p for p in params if id(p) in last], "lr": lr * mult},
    ]


def build_optimizer(cfg: Mapping, params: Iterable) -> torch.optim.Optimizer:
    """The optimizer of a ``_partial_: true`` config over ``params``.

    A key set to null is left out (a recipe can drop SGD's momentum when it picks Adam).
    """
    options = {k: v for k, v in cfg.items() if v is not None}
    return instantiate(options)(params=params)


def build_scheduler(
    cfg: Mapping, optimizer: torch.optim.Optimizer, progress: Callable[[], float]
) -> Any:
    """A scheduler from its ``_partial_`` config; a :class:`~sr_lightning.core.schedules.BudgetLR`
    follows ``progress`` (the fraction of the run's budget done)."""
    factory = instantiate(cfg)
    if is_budget_schedule(factory):
        return factory(optimizer=optimizer, progress=progress)
    return factory(optimizer=optimizer)
