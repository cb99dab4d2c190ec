"""Released community models: recognise a weights file with spandrel, and run it as ours.

``sr-eval`` / ``sr-upscale`` / ``sr-export weights=<file>`` come here when the file is not
one of ours (no sr-lightning metadata) and no ``model=`` names its net. The file has already
been read by :func:`sr_lightning.core.model_file.read_model_file` (``torch.load(weights_only=True)``
or safetensors, unwrapped by spandrel's ``canonicalize_state_dict``): spandrel only sees the
tensors, never the file, so its own (restricted, but fuller) unpickler is never used. spandrel
then recognises the architecture from the keys and shapes, and the net is rebuilt as a
:class:`~sr_lightning.nets.zoo.SpandrelNet` (:func:`sr_lightning.core.model_files.resolve_model`):
evaluation, tiling, TTA and export are exactly those of our own nets.

Only super-resolution models are accepted (scale >= 2, one image in, as many channels out
as in, 1 or 3 of them). An RGB model is evaluated on RGB images and a 1-channel one on the Y
channel (MATLAB ``rgb2ycbcr``); either way the metrics are on Y, as in the papers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from sr_lightning.core.model_file import load_net_state

log = logging.getLogger(__name__)

_KEYS_SHOWN = 5


class UnknownModelError(ValueError):
    """A weights file that is neither ours nor an architecture spandrel recognises."""


@dataclass(frozen=True)
class Detected:
    """What spandrel found in a state dict, and the net's weights in its own key format."""

    arch: str  # SpandrelNet's arch= ("ESRGAN", "PLKSR.RealPLKSR")
    name: str  # spandrel's display name ("ESRGAN", "RealESRGAN Compact")
    scale: int
    channels: int
    tags: list[str]
    hyperparameters: dict[str, Any]
    state: dict[str, Tensor] = field(repr=False)

    def net_config(self) -> dict[str, Any]:
        return {
            "_target_": "sr_lightning.nets.zoo.SpandrelNet",
            "arch": self.arch,
            "hyperparameters": self.hyperparameters,
        }

    def info(self) -> dict[str, Any]:
        """The plain description ``run_info.json`` records."""
        import spandrel

        return {
            "name": self.name,
            "arch": self.arch,
            "scale": self.scale,
            "channels": self.channels,
            "tags": list(self.tags),
            "hyperparameters": self.hyperparameters,
            "detected_by": f"spandrel {spandrel.__version__}",
        }

    def describe(self) -> str:
        return describe_detected(self.info())


def describe_detected(info: Mapping[str, Any]) -> str:
    """``ESRGAN x4 RGB [tags]``: a detected model as logs and errors name it."""
    colour = "RGB" if info["channels"] == 3 else "1-channel"
    tags = f" [{', '.join(info['tags'])}]" if info.get("tags") else ""
    return f"{info['name']} x{info['scale']} {colour}{tags}"


def registry() -> Any:
    """spandrel's registry, with spandrel_extra_arches' architectures when it is installed."""
    import spandrel

    try:
        import spandrel_extra_arches
    except ImportError:
        return spandrel.MAIN_REGISTRY
    with contextlib.suppress(spandrel.DuplicateArchitectureError):  # installed earlier
        spandrel_extra_arches.install()
    return spandrel.MAIN_REGISTRY


def _keys_listing(state: Mapping[str, Any]) -> str:
    keys = list(state)
    shown = ", ".join(keys[:_KEYS_SHOWN])
    return f"{len(keys)} tensors: {shown}" + (", …" if len(keys) > _KEYS_SHOWN else "")


def detect(state: Mapping[str, Tensor], source: str) -> Detected:
    """Recognise the architecture of a state dict; one clear error when it cannot be."""
    import spandrel

    from sr_lightning.nets.zoo import arch_name, plain_hyperparameters

    reg = registry()
    canonical = spandrel.canonicalize_state_dict(dict(state))
    tried = ", ".join(a.architecture.id for a in reg.architectures())
    try:
        desc = reg.load(canonical)
    except spandrel.UnsupportedModelError:
        raise UnknownModelError(
            f"{source} is not an sr-lightning file (no metadata) and spandrel "
            f"{spandrel.__version__} recognises none of its architectures in it "
            f"({_keys_listing(canonical)}). Tried: {tried}. If it is a state dict of one of "
            "our nets, add model=<method> scale=<s> channels=<c>; architectures under "
            "non-commercial licences need `pip install spandrel_extra_arches`."
        ) from None
    except Exception as err:  # a detector matched but could not build the net
        raise UnknownModelError(
            f"{source}: spandrel {spandrel.__version__} took it for an architecture but could "
            f"not build it ({type(err).__name__}: {err}); the file may be damaged or of a "
            "newer variant"
        ) from None
    what = f"{source} holds a {desc.architecture.name} model"
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise UnknownModelError(f"{what} for {desc.purpose}, not super-resolution")
    if desc.scale < 2:
        raise UnknownModelError(
            f"{what} of scale {desc.scale} ({desc.purpose}: denoising / restoration), not "
            "super-resolution; sr-eval and sr-upscale need a model of scale >= 2"
        )
    if desc.input_channels != desc.output_channels or desc.input_channels not in (1, 3):
        raise UnknownModelError(
            f"{what} with {desc.input_channels} input and {desc.output_channels} output "
            "channels; only 1-channel and RGB models (as many channels out as in) are supported"
        )
    return Detected(
        arch=arch_name(desc.model),
        name=desc.architecture.name,
        scale=int(desc.scale),
        channels=int(desc.input_channels),
        tags=list(desc.tags),
        hyperparameters=plain_hyperparameters(desc.model),
        state=dict(desc.model.state_dict()),
    )


def check_request(found: Detected, expect: Mapping | None, source: str) -> None:
    """``scale=`` must agree with the file; ``channels=`` only notes how the model is run."""
    asked = dict(expect or {})
    if asked.get("scale") is not None and int(asked["scale"]) != found.scale:
        raise ValueError(
            f"{source} is {found.describe()}; you asked scale={asked['scale']}. Drop scale= "
            "(it is read from the file) or pick a model of that scale."
        )
    channels = asked.get("channels")
    if channels is not None and int(channels) != found.channels:
        how = (
            "on RGB images"
            if found.channels == 3
            else "on the Y channel (MATLAB rgb2ycbcr) of the images"
        )
        log.warning(
            "channels=%s: %s is %s, so it is run %s; metrics are on Y either way",
            channels,
            source,
            found.describe(),
            how,
        )


def load_release_into(net: nn.Module, state: Mapping[str, Tensor], source: str) -> Detected:
    """Load a released model's weights into a ``SpandrelNet`` of the same architecture.

    ``state`` is what the weights-only reader got from the file; architecture, scale and
    channels must be those of ``net``, and every tensor must fit.
    """
    from sr_lightning.nets.zoo import SpandrelNet

    if not isinstance(net, SpandrelNet):
        raise ValueError(
            f"{source}: a released model initialises only a spandrel net (net._target_: "
            f"sr_lightning.nets.zoo.SpandrelNet), not {type(net).__name__}"
        )
    found = detect(state, source)
    ours = {"arch": net.arch, "scale": net.scale, "channels": net.in_channels}
    theirs = {"arch": found.arch, "scale": found.scale, "channels": found.channels}
    clashes = [
        f"{k} {theirs[k]} (file) vs {ours[k]} (this run)" for k in ours if ours[k] != theirs[k]
    ]
    if clashes:
        raise ValueError(
            f"{source} is {found.describe()}, which does not fit this run's net: "
            f"{'; '.join(clashes)}. Pick a model= of that architecture, or set scale= / "
            "channels= to match the file."
        )
    load_net_state(net, found.state, source)
    return found
