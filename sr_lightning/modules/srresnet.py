"""SRResNet (Ledig et al., CVPR'17): the SRGAN generator trained alone with MSE on LR input.

Nothing here differs from the base module's training: the method's specifics (Adam 1e-4,
96×96 HR crops, batch 16, ``norm: batch | none``) are configuration in
``conf/model/srresnet.yaml``. BatchNorm makes train and eval outputs differ; validation runs
in eval mode (running statistics), as Lightning sets it. A trained SRResNet checkpoint is
also the starting point of SRGAN.
"""

from sr_lightning.modules.base import SRModule


class SRResNetModule(SRModule):
    method = "srresnet"
