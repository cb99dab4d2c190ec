"""The plain metadata a training checkpoint carries, so that tools know what it holds (method,
module class, scale, channels) without rebuilding the module.

The module writes it as ``checkpoint["sr_lightning"]`` (``CHECKPOINT_KEY``, defined with the
reader of model files): ``{"method", "module", "scale", "channels"}``, plus ``val_psnr_best``
(:mod:`.tracking`), SRGAN's ``ema`` and VDSR's ``scales``.
"""

from __future__ import annotations

from typing import Any


def checkpoint_metadata(module: Any) -> dict[str, Any]:
    """What ``module`` is: its method, class, scale and channels (plain values only)."""
    return {
        "method": module.method,
        "module": f"{type(module).__module__}.{type(module).__qualname__}",
        "scale": module.scale,
        "channels": module.channels,
    }
