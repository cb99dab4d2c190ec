"""One LightningModule per method, on the shared :class:`~.base.SRModule` base: training logic
(steps, optimizers, schedules, validation), not architecture (that is :mod:`sr_lightning.nets`).

Layer: below the apps, above everything else; a module may import runtime (SRGAN's manual
optimization uses :mod:`sr_lightning.runtime.lightning_compat`), core, nets, losses, data and
common. Nothing but the apps imports a module (``make lint`` checks it; core.checkpoints and
core.zoo are exempt until the model-loading rewrite of issue 24 lands).
"""
