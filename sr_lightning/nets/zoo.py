"""Any architecture spandrel knows (ESRGAN's RRDBNet, SRVGG compact, SwinIR, SPAN, …) as a net.

``SpandrelNet(arch="ESRGAN", hyperparameters={...})`` builds spandrel's class for that
architecture, so a community architecture trains, validates, sweeps and exports like our own
nets: it is a plain ``nn.Module`` configured by yaml (``conf/model/rrdbnet.yaml``, …).

* ``arch`` is the folder name of the architecture in ``spandrel.architectures`` (or, when
  installed, ``spandrel_extra_arches.architectures``); where a folder holds several nets it
  is ``"<folder>.<class>"`` (``"PLKSR.RealPLKSR"``).
* The state dict has the keys of the spandrel net itself (no wrapper prefix), so weights
  released for the architecture load as they are and our exports load in spandrel-based
  tools (chaiNNer, traiNNer-redux).
* Scale, channels and input size requirements come from spandrel's detection of the net's
  own state dict: one source of truth with what ``sr-eval`` detects in a released file.
* ``forward`` pads the input (reflect, then replicate) to the architecture's size
  requirements and crops the output back; it does not clamp, so training sees raw outputs.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# where architecture folders live: spandrel's own (MIT), then the optional extra package
ARCH_PACKAGES = ("spandrel.architectures", "spandrel_extra_arches.architectures")

_BODY = "body."


def arch_module(folder: str) -> Any:
    """The module of an architecture folder, from spandrel or spandrel_extra_arches."""
    if not folder.isidentifier():
        raise ValueError(f"arch={folder!r} is not an architecture name (e.g. ESRGAN, SwinIR)")
    for package in ARCH_PACKAGES:
        try:
            return importlib.import_module(f"{package}.{folder}")
        except ModuleNotFoundError as err:
            if err.name not in (package.split(".")[0], package, f"{package}.{folder}"):
                raise
    import spandrel

    known = sorted(a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures())
    raise ValueError(
        f"arch={folder!r} is not an architecture of spandrel {spandrel.__version__} "
        f"(known: {', '.join(known)}); the non-commercial ones need `pip install "
        "spandrel_extra_arches`"
    )


def net_classes(module: Any) -> dict[str, type[nn.Module]]:
    """The nets an architecture folder exports (``__all__`` entries that are nn.Modules)."""
    names = getattr(module, "__all__", [])
    return {
        n: getattr(module, n)
        for n in names
        if isinstance(getattr(module, n, None), type) and issubclass(getattr(module, n), nn.Module)
    }


def arch_class(arch: str) -> type[nn.Module]:
    """The spandrel class named by ``arch`` (``"ESRGAN"`` or ``"PLKSR.RealPLKSR"``)."""
    folder, _, name = arch.partition(".")
    classes = net_classes(arch_module(folder))
    if name:
        if name not in classes:
            raise ValueError(f"arch={arch!r}: {folder} has no net {name!r}; it has {list(classes)}")
        return classes[name]
    if len(classes) != 1:
        options = ", ".join(f"{folder}.{n}" for n in classes)
        raise ValueError(f"arch={arch!r} holds several nets; name one: {options}")
    return next(iter(classes.values()))


def arch_name(net: nn.Module) -> str:
    """The ``arch`` string that rebuilds a spandrel net of this class."""
    cls = type(net)
    parts = cls.__module__.split(".")
    if len(parts) < 3 or ".".join(parts[:2]) not in ARCH_PACKAGES:
        raise ValueError(f"{cls.__module__}.{cls.__qualname__} is not a spandrel architecture")
    folder = parts[2]
    classes = net_classes(arch_module(folder))
    exported = next((n for n, c in classes.items() if c is cls), cls.__name__)
    return folder if len(classes) == 1 else f"{folder}.{exported}"


_NOT_PLAIN = object()  # marks a value that yaml / JSON / weights_only checkpoints cannot hold


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return items if all(v is not _NOT_PLAIN for v in items) else _NOT_PLAIN
    if isinstance(value, Mapping):
        items = {str(k): _plain(v) for k, v in value.items()}
        return items if all(v is not _NOT_PLAIN for v in items.values()) else _NOT_PLAIN
    return _NOT_PLAIN


def plain_hyperparameters(net: nn.Module) -> dict[str, Any]:
    """The net's hyperparameters as plain containers (what yaml, JSON and checkpoints hold).

    Values that are not plain (SwinIR's ``norm_layer`` class) are left out when they are the
    constructor's default, which rebuilds them; any other is an error naming the key.
    """
    params = inspect.signature(type(net).__init__).parameters
    out: dict[str, Any] = {}
    for key, value in dict(getattr(net, "hyperparameters", {}) or {}).items():
        plain = _plain(value)
        if plain is not _NOT_PLAIN:
            out[key] = plain
            continue
        default = params[key].default if key in params else inspect.Parameter.empty
        if value is not default:
            raise ValueError(
                f"{type(net).__name__}: hyperparameter {key}={value!r} cannot be written to a "
                "config or checkpoint (not a number, string or list)"
            )
    return out


def _without_body_prefix(module, state_dict, prefix, local_metadata) -> None:
    """State-dict hook: ``<prefix>body.x`` -> ``<prefix>x`` (the spandrel net's own keys)."""
    for key in [k for k in state_dict if k.startswith(prefix + _BODY)]:
        state_dict[prefix + key[len(prefix + _BODY) :]] = state_dict.pop(key)


def _with_body_prefix(module, state_dict, prefix, *args) -> None:
    """Load pre-hook: every key under ``prefix`` is the spandrel net's own; put it under body."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        state_dict[prefix + _BODY + key[len(prefix) :]] = state_dict.pop(key)


# what spandrel's architectures call the scale and the channels (their own names, one place):
# `SpandrelNet(scale=, channels=)` sets each of these that the architecture takes
SCALE_NAMES = ("scale", "upscale", "up_scale", "upscale_factor")
CHANNEL_NAMES = (
    *("in_nc", "out_nc", "num_in_ch", "num_out_ch", "in_chans", "out_chans"),
    *("in_ch", "out_ch", "in_channels", "out_channels", "inp_channels"),
)


def space_hyperparameters(
    cls: type[nn.Module],
    hyperparameters: Mapping[str, Any],
    scale: int | None,
    channels: int | None,
) -> dict[str, Any]:
    """``hyperparameters`` with ``scale`` / ``channels`` under the names ``cls`` takes them by;
    a value the hyperparameters give themselves stays (SPAN is RGB only: it sets 3)."""
    out = dict(hyperparameters)
    params = inspect.signature(cls).parameters
    for names, value in ((SCALE_NAMES, scale), (CHANNEL_NAMES, channels)):
        if value is None:
            continue
        for name in names:
            if name in params and name not in out:
                out[name] = int(value)
    return out


class SpandrelNet(nn.Module):
    """A spandrel architecture built from its name and hyperparameters; a post-upsampling net.

    ``scale`` and ``channels`` (the run's; the builder passes them) go to the architecture
    under its own names (:data:`SCALE_NAMES`, :data:`CHANNEL_NAMES`).
    """

    upsampling = "post"

    def __init__(
        self,
        arch: str,
        hyperparameters: Mapping[str, Any] | None = None,
        scale: int | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__()
        import spandrel

        cls = arch_class(str(arch))
        hyperparameters = space_hyperparameters(cls, hyperparameters or {}, scale, channels)
        try:
            self.body = cls(**hyperparameters)
        except TypeError as err:
            raise ValueError(
                f"arch={arch}: bad hyperparameters for {cls.__name__} ({err}); its parameters "
                f"are {list(inspect.signature(cls.__init__).parameters)[1:]}"
            ) from None
        self.arch = str(arch)
        try:
            desc = spandrel.MAIN_REGISTRY.load(self.body.state_dict())
        except Exception as err:  # spandrel raises several types; all mean "cannot describe"
            raise ValueError(
                f"arch={arch}: spandrel cannot describe the net built from these "
                f"hyperparameters ({type(err).__name__}: {err})"
            ) from None
        self.scale = int(desc.scale)
        self.in_channels = int(desc.input_channels)
        self.out_channels = int(desc.output_channels)
        self.architecture_name = desc.architecture.name
        self.tags = list(desc.tags)
        req = desc.size_requirements
        self._minimum, self._multiple = int(req.minimum), int(req.multiple_of)
        self.register_state_dict_post_hook(_without_body_prefix)
        self.register_load_state_dict_pre_hook(_with_body_prefix)

    def padding(self, h: int, w: int) -> tuple[int, int]:
        """Pixels to add below and to the right so the input meets the size requirements."""

        def need(n: int) -> int:
            target = max(n, self._minimum)
            return target + (-target) % self._multiple - n

        return need(h), need(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = self.padding(h, w)
        if pad_h or pad_w:
            reflect_h, reflect_w = min(pad_h, h - 1), min(pad_w, w - 1)
            x = F.pad(x, (0, reflect_w, 0, reflect_h), mode="reflect")
            x = F.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")
        out = self.body(x)
        return out[..., : h * self.scale, : w * self.scale] if pad_h or pad_w else out

    def extra_repr(self) -> str:
        return f"arch={self.arch}, scale={self.scale}, channels={self.in_channels}"
