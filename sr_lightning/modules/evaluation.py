"""The per-set metric stores of validation and test: one :class:`SRMetrics` per evaluation
set, made on first use, read and reset at each epoch's end."""

from __future__ import annotations

import torch
from torch import nn

from sr_lightning.core.metrics import SRMetrics


def metrics_of(store: nn.ModuleDict, name: str, scale: int, device: torch.device) -> SRMetrics:
    """The metrics of set ``name`` in ``store`` (the papers' protocol at ``scale``)."""
    if name not in store:
        store[name] = SRMetrics(crop=scale).to(device)
    return store[name]


def compute_and_reset(store: nn.ModuleDict) -> dict[str, dict[str, torch.Tensor]]:
    """``{set: {psnr, ssim, …}}`` of every set that saw images this epoch; all reset."""
    results = {}
    for name, metric in store.items():
        if metric.update_called:
            results[name] = metric.compute()
        metric.reset()
    return results
