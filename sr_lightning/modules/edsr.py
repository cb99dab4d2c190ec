"""EDSR (Lim et al., CVPRW 2017): LR input, L1 loss, trained like the base module.

Nothing here differs from the base module's training: the method's specifics (L1, Adam
1e-4 halved every 2·10^5 updates, 48×48 LR patches, batch 16, ×3/×4 started from the ×2
model through ``model.init_from``) are configuration in ``conf/model/edsr*.yaml`` and
``conf/experiment/edsr*.yaml``. One module serves both sizes: ``method`` (``edsr`` or
``edsr_baseline``) comes from the yaml.
"""

from sr_lightning.modules.base import SRModule


class EDSRModule(SRModule):
    method = "edsr"
