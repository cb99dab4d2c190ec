"""The ``degradation=`` setting: which LR a run trains and evaluates on, in one place.

:class:`Degradation` is built from the config group (``conf/degradation/*.yaml``) and gives
the training LR of a float HR batch and the evaluation LR of a uint8 HR image:

* ``bicubic`` (BI, the default): MATLAB bicubic; training LR rounded to 8 bits, evaluation LR
  left unrounded (the SRCNN / VDSR evaluation code);
* ``bd``, ``dn``: RDN's protocols (:mod:`.bd`, :mod:`.dn`), LR on 8-bit levels;
* ``realesrgan``: Real-ESRGAN's second-order degradation (:mod:`.realesrgan`).

BD, DN and Real-ESRGAN are defined on the RGB image: a luma model takes the Y of that LR
(:attr:`Degradation.needs_rgb`). Random ones take a seed per sample: training from the run's
seed and the sample's position, evaluation from ``eval_seed`` and the image's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sr_lightning.common.pixels import quantize
from sr_lightning.data.degradations.bd import SIGMA as BD_SIGMA
from sr_lightning.data.degradations.bd import bd_downscale
from sr_lightning.data.degradations.dn import SIGMA as DN_SIGMA
from sr_lightning.data.degradations.dn import dn_degrade
from sr_lightning.data.degradations.realesrgan import realesrgan_degrade, realesrgan_options
from sr_lightning.data.degradations.seeding import mix, name_key
from sr_lightning.data.imresize import imresize

__all__ = ["NAMES", "Degradation"]

NAMES = ("bicubic", "bd", "dn", "realesrgan")
_KEYS = {"name", "sigma", "eval_seed", "options"}


@dataclass(frozen=True)
class Degradation:
    """One LR model. ``sigma``: the BD blur's (1.6) or the DN noise's (30, on [0, 255]);
    ``eval_seed``: fixes evaluation noise; ``options``: Real-ESRGAN's overrides."""

    name: str = "bicubic"
    sigma: float | None = None
    eval_seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise ValueError(f"degradation.name={self.name!r}: one of {', '.join(NAMES)}")
        if self.options and self.name != "realesrgan":
            raise ValueError("degradation.options are Real-ESRGAN's: only for realesrgan")
        if self.name == "realesrgan":
            realesrgan_options(self.options)  # unknown keys fail at start-up

    @classmethod
    def from_config(cls, cfg: Mapping | str | None) -> Degradation:
        """From ``cfg.degradation`` (a mapping, a name, or None for bicubic)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, str):
            return cls(name=cfg)
        unknown = sorted(set(cfg) - _KEYS)
        if unknown:
            raise ValueError(
                f"unknown degradation key(s) {', '.join(unknown)}; valid: {', '.join(sorted(_KEYS))}"
            )
        return cls(**{k: (dict(v) if k == "options" else v) for k, v in cfg.items()})

    @property
    def needs_rgb(self) -> bool:
        """BD, DN and Real-ESRGAN degrade the RGB image; a luma model takes the LR's Y."""
        return self.name != "bicubic"

    @property
    def random(self) -> bool:
        return self.name in ("dn", "realesrgan")

    def train_lr(self, hr: torch.Tensor, scale: int, seeds: Sequence[int]) -> torch.Tensor:
        """LR of a float HR batch (N, C, H, W) on 8-bit levels, one seed per sample."""
        if self.name == "bicubic":
            return quantize(imresize(hr, 1.0 / scale))
        return self._degrade(hr, scale, seeds)

    def eval_lr(self, hr: torch.Tensor, scale: int, names: Sequence[str]) -> torch.Tensor:
        """LR of a uint8 HR batch (N, C, H, W) whose sides are multiples of ``scale``.

        bicubic: float, unrounded (the SRCNN / VDSR evaluation code); the others: uint8,
        random ones seeded by ``eval_seed`` and each image's name (the same in every run).
        """
        if self.name == "bicubic":
            return imresize(hr.float().div(255.0), 1.0 / scale)
        seeds = [mix(self.eval_seed, name_key(n)) for n in names]
        return self._degrade(hr, scale, seeds)

    def _degrade(self, hr: torch.Tensor, scale: int, seeds: Sequence[int]) -> torch.Tensor:
        if self.name == "bd":
            return bd_downscale(hr, scale, BD_SIGMA if self.sigma is None else self.sigma)
        if self.name == "dn":
            return dn_degrade(hr, scale, seeds, DN_SIGMA if self.sigma is None else self.sigma)
        return realesrgan_degrade(hr, scale, seeds, self.options)
