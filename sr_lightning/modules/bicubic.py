"""``model=bicubic``: the MATLAB bicubic baseline, no weights and nothing to train."""

from sr_lightning.modules.base import SRModule


class BicubicModule(SRModule):
    method = "bicubic"
