"""The values a run's parts read from the top of its config, set here and nowhere else.

A training config names its upscaling factor, colour space and loss once, at the top level
(``scale``, ``channels``, ``loss``), and its training patch once, in the model config: in LR
pixels (``model.patch_lr: 17``, HR 17·scale) or in HR pixels (``model.patch_hr: 96``).
:func:`derive` turns them into what the module, its nets and the data module take; the
builders (:mod:`sr_lightning.core.builders`) pass them on. No group copies them by
interpolation, so a value has one source and an override of it reaches every part.

Which argument of a net gets the scale and the channels is :func:`net_config`'s choice
(spandrel's architectures name them in their own ways: :mod:`sr_lightning.nets.zoo`).

This module imports nothing heavy at import time: the config check reads it before Lightning.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# keys that the groups once copied from the top level: where each value comes from now
MOVED = {
    "model.patch_size": "the training patch is model.patch_lr (LR pixels) or model.patch_hr "
    "(HR pixels): e.g. model.patch_hr=96",
    "model.scale": "the module takes the top-level scale: use scale=<s>",
    "model.channels": "the module takes the top-level channels: use channels=1|3",
    "model.loss": "the module trains with the top-level loss group: use loss=<name> or loss.<key>",
    "model.scales": "VDSR's scales are data.scales",
    "model.net.scale": "the net is built at the top-level scale: use scale=<s>",
    "model.net.channels": "the net is built for the top-level channels: use channels=1|3",
    "model.discriminator.channels": "the discriminator takes the top-level channels",
    "data.scale": "the data module takes the top-level scale: use scale=<s>",
    "data.channels": "the data module takes the top-level channels: use channels=1|3",
    "data.patch_size": "the training patch is model.patch_lr (LR pixels) or model.patch_hr "
    "(HR pixels)",
}

# the module's nets, built from these keys of the model config with the run's scale/channels
NET_KEYS = ("net", "discriminator")


def moved_message(key: str) -> str | None:
    """``model.patch_size: moved; …`` for a key the groups no longer hold, else None."""
    where = MOVED.get(key)
    return f"{key}: moved; {where}." if where else None


def hr_patch(
    scale: int,
    scales: Sequence[int] | None = None,
    patch_lr: int | None = None,
    patch_hr: int | None = None,
) -> int | None:
    """The HR training patch side: ``patch_lr`` LR pixels at ``scale``, or ``patch_hr`` HR
    pixels, rounded up to a multiple of every training scale (whole LR pixels at each:
    SRCNN's 33 is 34 at x2, 33 at x3, 36 at x4). None when the model gives neither."""
    if patch_lr is not None and patch_hr is not None:
        raise ValueError(
            f"model.patch_lr={patch_lr} and model.patch_hr={patch_hr} both set the training "
            "patch; keep one (add model.patch_lr=null or model.patch_hr=null)."
        )
    side = patch_lr * scale if patch_lr is not None else patch_hr
    if side is None:
        return None
    step = math.lcm(*{int(s) for s in (scales or [scale])})
    return -(-side // step) * step


@dataclass(frozen=True)
class Derived:
    """What a run's parts take from the top level (see the module docstring)."""

    scale: int
    channels: int
    loss: dict | None = None
    scales: list[int] | None = None  # multi-scale training (data.scales); None: scale only
    patch_size: int | None = None  # HR pixels

    def module_args(self) -> dict[str, Any]:
        return {"scale": self.scale, "channels": self.channels, "loss": self.loss}

    def data_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"scale": self.scale, "channels": self.channels}
        if self.patch_size is not None:
            args["patch_size"] = self.patch_size
        return args


def _plain(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def derive(cfg: Mapping) -> Derived:
    """The :class:`Derived` values of a composed config (top-level ``scale``, ``channels``,
    ``loss``; ``model.patch_lr`` / ``model.patch_hr``; ``data.scales``)."""
    model = cfg.get("model") or {}
    data = cfg.get("data") or {}
    scale, channels = int(cfg.get("scale") or 1), int(cfg.get("channels") or 1)
    scales = _plain(data.get("scales"))
    loss = _plain(cfg.get("loss"))
    patch = hr_patch(scale, scales, model.get("patch_lr"), model.get("patch_hr"))
    return Derived(
        scale=scale,
        channels=channels,
        loss=dict(loss) if loss is not None else None,
        scales=[int(s) for s in scales] if scales else None,
        patch_size=patch,
    )


def takes(cls: Any, name: str) -> bool:
    """Whether ``cls(...)`` names the argument ``name`` (``**kwargs`` does not count)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    param = params.get(name)
    return param is not None and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)


def net_config(net: Mapping, scale: int, channels: int) -> dict:
    """``net`` (a ``_target_`` config) with the run's ``scale`` and ``channels`` given as the
    arguments its class names ``scale`` and ``channels`` (a pre-upsampling net takes no scale;
    :class:`~sr_lightning.nets.zoo.SpandrelNet` maps them to its architecture's names)."""
    from hydra.utils import get_class

    out = dict(net)
    cls = get_class(out["_target_"])
    for name, value in (("scale", scale), ("channels", channels)):
        if takes(cls, name):
            out[name] = int(value)
    return out
