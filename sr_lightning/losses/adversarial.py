"""GAN losses on discriminator logits."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AdversarialKind = Literal["vanilla", "lsgan", "hinge"]


class AdversarialLoss(nn.Module):
    """Discriminator and generator objectives for one GAN formulation.

    * ``vanilla`` (SRGAN): binary cross-entropy with logits; the generator uses
      the non-saturating ``-log D(G(z))`` form.
    * ``lsgan``: least squares to the targets (real → ``real_label``, fake → 0;
      the generator pulls fakes to 1), without LSGAN's constant 1/2 factors.
    * ``hinge``: ``relu(1 - real) + relu(1 + fake)``; generator ``-fake``.

    The discriminator loss is the *sum* of its real and fake terms (averaged over
    the batch each), see :meth:`discriminator_terms`. ``real_label < 1`` is
    one-sided label smoothing (Salimans et al. 2016): only the real target moves;
    it has no meaning for the hinge loss, which refuses it. Pass detached fakes to
    the discriminator loss; it does not detach for you.
    """

    def __init__(self, kind: AdversarialKind) -> None:
        super().__init__()
        if kind not in ("vanilla", "lsgan", "hinge"):
            raise ValueError(
                f"unknown adversarial loss {kind!r}; valid: 'vanilla', 'lsgan', 'hinge'"
            )
        self.kind = kind

    def discriminator_terms(
        self, real_logits: Tensor, fake_logits: Tensor, real_label: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """``(real_term, fake_term)`` of the discriminator loss, e.g. for logging."""
        if not 0.0 < real_label <= 1.0:
            raise ValueError(f"real_label must be in (0, 1], got {real_label}")
        if self.kind == "hinge":
            if real_label != 1.0:
                raise ValueError(
                    "label smoothing (real_label < 1) is not defined for the hinge loss"
                )
            return F.relu(1.0 - real_logits).mean(), F.relu(1.0 + fake_logits).mean()
        real_target = torch.full_like(real_logits, real_label)
        fake_target = torch.zeros_like(fake_logits)
        if self.kind == "vanilla":
            return (
                F.binary_cross_entropy_with_logits(real_logits, real_target),
                F.binary_cross_entropy_with_logits(fake_logits, fake_target),
            )
        return F.mse_loss(real_logits, real_target), F.mse_loss(fake_logits, fake_target)

    def discriminator_loss(
        self, real_logits: Tensor, fake_logits: Tensor, real_label: float = 1.0
    ) -> Tensor:
        real_term, fake_term = self.discriminator_terms(real_logits, fake_logits, real_label)
        return real_term + fake_term

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        if self.kind == "hinge":
            return -fake_logits.mean()
        target = torch.ones_like(fake_logits)
        if self.kind == "vanilla":
            return F.binary_cross_entropy_with_logits(fake_logits, target)
        return F.mse_loss(fake_logits, target)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
