"""ESPCN (Shi et al., CVPR'16): LR input, sub-pixel convolution, MSE.

The training logic is the base module's; the method's specifics (last layer at lr ×0.1,
the lr schedule, HR patches of 17·r) are configuration in ``conf/model/espcn.yaml``.
"""

from sr_lightning.modules.base import SRModule


class ESPCNModule(SRModule):
    method = "espcn"
