"""The Lightning / Hydra / W&B plumbing: fault tolerance and checkpoint writing, DDP and SLURM
launching, sweep summaries, callbacks and the trainer's callback / logger builders, console
output, printing user errors, and start-up checks. Lightning's private internals are touched
only in :mod:`.lightning_compat`.

Layer: below :mod:`sr_lightning.modules` (SRGAN uses :mod:`.lightning_compat`), above
:mod:`sr_lightning.core`; it may import core, nets, losses, data and common, never modules or
apps (``make lint`` checks it). The error classes themselves are in
:mod:`sr_lightning.common.errors`.
"""
