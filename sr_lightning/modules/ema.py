"""An exponential moving average of a generator, on ``torch.optim.swa_utils.AveragedModel``.

Only the generator is averaged: Lightning's ``WeightAveraging`` callback would average the
whole LightningModule (the discriminator too). ``use_buffers=True`` averages the BatchNorm
running statistics along with the weights, so the averaged net evaluates with statistics
that match its averaged weights.

The average is a registered submodule of the training module, so its weights and its
``n_averaged`` counter are part of ``state_dict()``: checkpoints carry it and resuming
restores it. Its parameters never require gradients, so no optimizer, DDP bucket or
``toggle_optimizer`` ever sees them.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class GeneratorEMA(AveragedModel):
    """``W_ema ← decay · W_ema + (1 − decay) · W`` after every generator update.

    The first :meth:`update_parameters` copies the generator (``AveragedModel`` semantics),
    so the average starts from the weights training starts from (e.g. ``init_from``).
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        # decay in [0, 1): the config schema's check (model.ema_decay)
        super().__init__(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay = float(decay)
        self.requires_grad_(False)

    @property
    def started(self) -> bool:
        """Whether the average holds generator weights yet (not before the first update)."""
        return bool(self.n_averaged > 0)

    def extra_repr(self) -> str:
        return f"decay={self.decay}"
