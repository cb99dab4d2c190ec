"""Training a spandrel architecture (``model=rrdbnet``, ``swinir_light``, ``span``, …).

The net is a :class:`~sr_lightning.nets.zoo.SpandrelNet`; training is the base module's
(pixel loss, optional VGG content term, the papers' validation). What this module adds is
``init_from``: fine-tuning starts from a released model of the same architecture (a
``.pth`` / ``.safetensors`` file that spandrel recognises), or from an sr-train checkpoint.
"""

from __future__ import annotations

from sr_lightning.modules.base import SRModule
from sr_lightning.nets.zoo import SpandrelNet


class ZooModule(SRModule):
    """The base module around a spandrel net, optionally initialised from released weights."""

    method = "zoo"
    init_from_partial = False  # a released model (or our file) of the same architecture

    def __init__(self, *args, init_from: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.net, SpandrelNet):
            raise ValueError(
                "this model config trains a spandrel architecture: its net._target_ must be "
                f"sr_lightning.nets.zoo.SpandrelNet, not {type(self.net).__name__}"
            )
        check_net_fits(self.net, self.scale, self.channels)
        if self.method == type(self).method:  # no name given by the config: the architecture's
            self.method = self.net.arch.lower()


class NetMismatchError(ValueError):
    """A spandrel net whose scale or channels are not the run's (e.g. RRDBNet at x3)."""


def check_net_fits(net: SpandrelNet, scale: int, channels: int) -> None:
    """The net's hyperparameters must give the run's scale and channels (one clear error)."""
    if net.scale != scale or net.in_channels != channels:
        raise NetMismatchError(
            f"model.net (arch={net.arch}) is x{net.scale} with {net.in_channels} channels but "
            f"the run is scale={scale} channels={channels}: drop the net's own scale/channels "
            "hyperparameters (the run's fill them) or pick a scale / channels the "
            "architecture supports"
        )
