"""The classes a model file may name, and the one rule for reading such names.

A model file (checkpoint, safetensors, state dict) is data from anywhere. It describes its net
by a registered class name and plain keyword values, never by code: the name is looked up
here, and only here. Registered are

* our nets, losses and LR schedules (:data:`BUILTIN`), and torch's optimizers and LR
  schedulers (by their public names, ``torch.optim.Adam``);
* spandrel's architectures, through :class:`~sr_lightning.nets.zoo.SpandrelNet` (its ``arch``
  must be an architecture folder of spandrel, which it checks itself);
* classes of the user's own packages listed in ``$SR_TRUSTED_MODULES`` (comma-separated
  module prefixes). Such a class must be defined in the module its name gives
  (``cls.__module__ + "." + cls.__qualname__`` equals the name), so a name cannot reach
  another object through a module's globals (``mypkg.os.system``).

Keyword values must be plain (numbers, strings, booleans, None, and lists / dicts of them).
Metadata is never handed to ``hydra.utils.instantiate``: :func:`build` calls the resolved
class itself.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

TRUSTED_ENV = "SR_TRUSTED_MODULES"

# Classes that moved since a file may have been written: old prefix -> new prefix.
# (Before the apps/core/runtime layout, the lr schedules lived at sr_lightning.schedules.)
MOVED_MODULES = {"sr_lightning.schedules.": "sr_lightning.core.schedules."}

# the base classes a registered name may resolve to
ALLOWED_BASES: tuple[type, ...] = (nn.Module, Optimizer, LRScheduler)

_PLAIN = (bool, int, float, str, type(None))


class UnsafeFileError(ValueError):
    """A model file that would need code execution, or an unregistered class, to load."""


@functools.cache
def builtin() -> dict[str, type]:
    """Registered names of ours and torch's, built once (the imports are lazy because the
    content loss brings torchvision's VGG)."""
    from sr_lightning.core.schedules import BudgetLR
    from sr_lightning.losses.adversarial import AdversarialLoss
    from sr_lightning.losses.content import VGGContentLoss
    from sr_lightning.losses.pixel import PixelLoss
    from sr_lightning.nets.bicubic import BicubicNet
    from sr_lightning.nets.discriminator import Discriminator
    from sr_lightning.nets.edsr import EDSR
    from sr_lightning.nets.espcn import ESPCN
    from sr_lightning.nets.srcnn import SRCNN
    from sr_lightning.nets.srresnet import SRResNet
    from sr_lightning.nets.vdsr import VDSR
    from sr_lightning.nets.zoo import SpandrelNet

    ours = [
        BicubicNet,
        Discriminator,
        EDSR,
        ESPCN,
        SRCNN,
        SRResNet,
        VDSR,
        SpandrelNet,
        PixelLoss,
        VGGContentLoss,
        AdversarialLoss,
        BudgetLR,
    ]
    table = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in ours}
    for prefix, module, base in (
        ("torch.optim", torch.optim, Optimizer),
        ("torch.optim.lr_scheduler", torch.optim.lr_scheduler, LRScheduler),
    ):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
                table[f"{prefix}.{name}"] = obj
    return table


def trusted_prefixes() -> tuple[str, ...]:
    """The user's packages whose classes model files may name (``$SR_TRUSTED_MODULES``)."""
    raw = os.environ.get(TRUSTED_ENV, "")
    return tuple(f"{p.strip().rstrip('.')}." for p in raw.split(",") if p.strip())


def current_name(name: str) -> str:
    """``name`` with a moved module prefix renamed to where the class lives now."""
    for old, new in MOVED_MODULES.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def _refuse(source: str, name: Any, why: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"refusing {source}: it names {name!r}, {why}. Model files may only name registered "
        f"classes (sr-lightning's nets, losses and schedules, torch's optimizers and "
        f"schedulers, spandrel architectures) or classes of packages listed in ${TRUSTED_ENV}."
    )


def _user_class(name: str, source: str) -> type:
    """A class of a trusted user package, defined exactly where its name says."""
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        raise _refuse(source, name, "which is not a dotted class name")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue  # the name's prefix is no module: try a shorter one
            raise
        obj: Any = module
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
        if obj is None:
            break
        where = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        if not inspect.isclass(obj) or where != name:
            raise _refuse(
                source, name, f"which is {where or type(obj).__name__}, not a class defined there"
            )
        return obj
    raise UnsafeFileError(
        f"{source} names {name!r}, which does not exist here: install the package that "
        "defines it (and make sure Python finds it)"
    )


def resolve(name: Any, source: str) -> type:
    """The registered class of ``name``; :class:`UnsafeFileError` for anything else."""
    if not isinstance(name, str):
        raise _refuse(source, name, "which is not a class name")
    name = current_name(name)
    cls = builtin().get(name)
    if cls is None:
        if not name.startswith(trusted_prefixes()):
            raise _refuse(source, name, "which is not registered")
        cls = _user_class(name, source)
    if not issubclass(cls, ALLOWED_BASES):
        raise _refuse(source, name, "which is not an nn.Module, optimizer or LR scheduler")
    return cls


def check_plain(value: Any, source: str, where: str) -> None:
    """Only plain values (numbers, strings, lists and dicts of them) may come from a file."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain(item, source, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsafeFileError(f"refusing {source}: {where} has a non-string key {key!r}")
            check_plain(item, source, f"{where}.{key}" if where else key)
        return
    raise UnsafeFileError(
        f"refusing {source}: {where} is a {type(value).__name__}, not a plain value"
    )


def targets(cfg: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(key path, _target_)`` inside a config."""
    if isinstance(cfg, Mapping):
        for key, value in cfg.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                yield path, value
            else:
                yield from targets(value, path)
    elif isinstance(cfg, list | tuple):
        for i, value in enumerate(cfg):
            yield from targets(value, f"{where}[{i}]")


def check_file_config(cfg: Any, source: str) -> None:
    """Refuse a config read from a file unless it is plain and names registered classes only.

    Covers the net, and the optimizer, scheduler and loss configs a checkpoint stores.
    """
    check_plain(cfg, source, "")
    for _, name in targets(cfg):
        resolve(name, source)


def renamed(cfg: Any) -> Any:
    """``cfg`` with every ``_target_`` under a moved module renamed (old checkpoints)."""
    if isinstance(cfg, Mapping):
        out = {k: renamed(v) for k, v in cfg.items()}
        if isinstance(out.get("_target_"), str):
            out["_target_"] = current_name(out["_target_"])
        return out
    if isinstance(cfg, list | tuple):
        return type(cfg)(renamed(v) for v in cfg)
    return cfg


def net_class(spec: Mapping, source: str) -> type[nn.Module]:
    """The net class a net spec (``{"_target_": name, **kwargs}``) names."""
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ValueError(f"{source}: the net is not described by a class name (no _target_)")
    cls = resolve(spec["_target_"], source)
    if not issubclass(cls, nn.Module):
        raise _refuse(source, spec["_target_"], "which is not an nn.Module")
    return cls


def build_net(spec: Mapping, source: str) -> nn.Module:
    """A net from a plain spec read from a file: the registered class, called with the spec's
    plain keyword values (nested ``_target_`` dicts are refused: nets take plain values)."""
    cls = net_class(spec, source)
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    check_plain(kwargs, source, "net")
    nested = [path for path, _ in targets(kwargs)]
    if nested:
        raise _refuse(source, spec["_target_"], f"with nested class names at {nested}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(
            f"{source}: cannot build {spec['_target_']} from its metadata: {err}"
        ) from None
