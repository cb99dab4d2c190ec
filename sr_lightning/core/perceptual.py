"""LPIPS and DISTS: full-reference perceptual metrics, for validation and ``sr-eval``.

The networks are torchmetrics' (its wheel bundles the LPIPS v0.1 linear heads and the DISTS
α/β); only their ImageNet backbones (AlexNet, VGG16) come from :mod:`sr_lightning.common.pretrained`,
so they are found, hash-checked and missed exactly like the content loss's VGG19, and never
downloaded behind the user's back by torchvision.

Protocol (docs/metrics.md): RGB in [0, 1]; the SR output clamped and rounded to 8 bits, as for
PSNR; ``scale`` pixels cropped from each border; one score per image, then the mean over the
images. Luma models are scored on their grey Y image (repeated to three channels, SR and HR
alike). Both metrics are distances: lower is better.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn
from torchmetrics import Metric

from sr_lightning.common.pixels import quantize
from sr_lightning.common.pretrained import load_backbone_state_dict, load_features, weights_present
from sr_lightning.core.metrics import check_pair

log = logging.getLogger(__name__)

PERCEPTUAL_METRICS = ("lpips", "dists")
LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}
DISTS_BACKBONE = "vgg16"


def backbone_of(name: str, settings: Mapping[str, Any]) -> str:
    """The torchvision backbone a metric needs (LPIPS: ``net`` alex | vgg; DISTS: VGG16)."""
    if name == "dists":
        return DISTS_BACKBONE
    net = str(settings.get("net", "alex"))
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; valid: {', '.join(LPIPS_BACKBONES)}")
    return LPIPS_BACKBONES[net]


def _backbone(name: str, settings: Mapping[str, Any], key: str):
    backbone = backbone_of(name, settings)
    return load_backbone_state_dict(
        backbone,
        settings.get("weights_path"),
        user=f"{name.upper()} ({key}.enabled=true)",
        key=f"{key}.weights_path",
        off=f"{key}.enabled=false turns {name.upper()} off",
    )


class LPIPSNet(nn.Module):
    """torchmetrics' LPIPS (v0.1 heads from its wheel) on our backbone; (N,3,H,W) in [0,1] → (N,)."""

    def __init__(self, state: dict[str, Tensor], source: Any, net: str = "alex") -> None:
        super().__init__()
        from torchmetrics.functional.image.lpips import _NoTrainLpips

        # pnet_rand: torchmetrics builds the backbone untrained (no download); ours goes in
        self.net = _NoTrainLpips(net=net, pretrained=True, pnet_rand=True)
        self.kind = net
        load_features(self.net.net, state, source, LPIPS_BACKBONES[net])

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return self.net(sr, hr, normalize=True).flatten()


@contextlib.contextmanager
def _untrained_vgg16() -> Iterator[None]:
    """torchmetrics' DISTS asks torchvision for pretrained VGG16 (a download): build it
    untrained instead, and load our verified weights into its stages afterwards."""
    from unittest import mock

    import torchmetrics.functional.image.dists as tm_dists
    from torchvision.models import vgg16

    with mock.patch.object(tm_dists, "vgg16", lambda weights=None: vgg16(weights=None)):
        yield


class DISTSNet(nn.Module):
    """torchmetrics' DISTS (α/β from its wheel) on our VGG16; (N,3,H,W) in [0,1] → (N,)."""

    def __init__(self, state: dict[str, Tensor], source: Any) -> None:
        super().__init__()
        from torchmetrics.functional.image.dists import DISTSNetwork

        with _untrained_vgg16():
            self.net = DISTSNetwork(load_weights=True)
        load_features(self.net, state, source, DISTS_BACKBONE)
        self.net.eval()

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return self.net(sr, hr).reshape(-1)


def perceptual_inputs(sr: Tensor, hr: Tensor, crop: int) -> tuple[Tensor, Tensor]:
    """The protocol's inputs: 8-bit-rounded SR and the HR, float32, cropped, three channels."""
    check_pair(sr, hr, crop)
    sr, hr = quantize(sr.float()), hr.float().clamp(0.0, 1.0)
    if crop:
        sr, hr = sr[..., crop:-crop, crop:-crop], hr[..., crop:-crop, crop:-crop]
    if sr.shape[1] == 1:
        sr, hr = sr.expand(-1, 3, -1, -1), hr.expand(-1, 3, -1, -1)
    return sr, hr


class PerceptualScorer(nn.Module):
    """The enabled metrics' per-image scores: ``{"lpips": (N,), "dists": (N,)}``."""

    def __init__(self, nets: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(dict(nets))
        self.requires_grad_(False).eval()

    @property
    def names(self) -> list[str]:
        return list(self.nets)

    @property
    def lpips_net(self) -> str | None:
        """The LPIPS backbone (alex | vgg), None without LPIPS: reports name it."""
        return self.nets["lpips"].kind if "lpips" in self.nets else None

    def train(self, mode: bool = True) -> PerceptualScorer:
        return super().train(False)  # never: dropout in LPIPS' heads would randomise scores

    @torch.no_grad()
    def forward(self, sr: Tensor, hr: Tensor, crop: int) -> dict[str, Tensor]:
        sr, hr = perceptual_inputs(sr, hr, crop)
        return {name: net(sr, hr).double() for name, net in self.nets.items()}


def enabled_metrics(
    settings: Mapping[str, Any] | None, key: str, method: str | None = None
) -> list[str]:
    """The metrics to compute. ``enabled``: true, false, or ``auto`` (sr-eval: on for SRGAN
    when the backbone weights are on disk, so that an offline evaluation never fails)."""
    chosen = []
    for name, entry in (settings or {}).items():
        if name not in PERCEPTUAL_METRICS:
            raise ValueError(
                f"{key}.{name}: unknown perceptual metric; valid: {', '.join(PERCEPTUAL_METRICS)}"
            )
        entry = entry or {}
        unknown = set(entry) - {"enabled", "net", "weights_path"}
        if unknown:
            raise ValueError(
                f"{key}.{name}: unknown key(s) {sorted(unknown)}; valid: enabled, net, weights_path"
            )
        enabled = entry.get("enabled", False)
        if enabled == "auto":
            present = weights_present(backbone_of(name, entry), entry.get("weights_path"))
            if method == "srgan" and not present:
                log.warning(
                    "%s skipped: no %s weights on disk (%s.enabled=true downloads them)",
                    name.upper(),
                    backbone_of(name, entry),
                    f"{key}.{name}",
                )
            enabled = method == "srgan" and present
        elif not isinstance(enabled, bool):
            raise ValueError(f"{key}.{name}.enabled must be true, false or auto, got {enabled!r}")
        if enabled:
            chosen.append(name)
    return chosen


def build_scorer(
    settings: Mapping[str, Any] | None, key: str, method: str | None = None
) -> PerceptualScorer | None:
    """The scorer of the enabled metrics (None when none is), weights loaded now, so that a
    missing backbone fails at start-up, naming the file and the keys."""
    nets: dict[str, nn.Module] = {}
    for name in enabled_metrics(settings, key, method):
        entry = dict((settings or {})[name] or {})
        state, source = _backbone(name, entry, f"{key}.{name}")
        if name == "lpips":
            nets[name] = LPIPSNet(state, source, str(entry.get("net", "alex")))
        else:
            nets[name] = DISTSNet(state, source)
    return PerceptualScorer(nets) if nets else None


class PerceptualMeans(Metric):
    """Per-image scores summed with the image count (``dist_reduce_fx="sum"``), so the mean
    under DDP is over each image exactly once, like :class:`sr_lightning.core.metrics.SRMetrics`."""

    full_state_update = False

    def __init__(self, names: list[str], crop: int) -> None:
        super().__init__()
        self.names, self.crop = list(names), int(crop)
        for name in self.names:
            self.add_state(f"{name}_sum", torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), "sum")

    def update(self, scores: Mapping[str, Tensor]) -> None:  # type: ignore[override]
        for name in self.names:
            setattr(self, f"{name}_sum", getattr(self, f"{name}_sum") + scores[name].sum())
        self.count += next(iter(scores.values())).numel()

    def compute(self) -> dict[str, Tensor]:
        n = self.count.to(torch.float64)
        return {name: getattr(self, f"{name}_sum") / n for name in self.names}


class PerceptualValidation(Callback):
    """``val/lpips`` / ``val/dists`` (and ``…_best``, the lowest so far) of the SR images that
    validation made (``validation_step``'s outputs: SRGAN's EMA generator), synced over ranks.

    The networks live here, outside the LightningModule: checkpoints and optimizers never see
    them. Weights are loaded when the callback is built, before any training.
    """

    key = "callbacks.perceptual"

    def __init__(
        self, lpips: Mapping[str, Any] | None = None, dists: Mapping[str, Any] | None = None
    ) -> None:
        settings = {"lpips": lpips or {}, "dists": dists or {}}
        self.scorer = build_scorer(settings, self.key)
        self.names = self.scorer.names if self.scorer is not None else []
        self.means: dict[str, PerceptualMeans] = {}
        self.best: dict[str, float] = {}

    def _means(self, set_name: str, pl_module: LightningModule) -> PerceptualMeans:
        if set_name not in self.means:
            metric = PerceptualMeans(self.names, pl_module.scale)
            self.means[set_name] = metric.to(pl_module.device)
        return self.means[set_name]

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.scorer is not None:
            self.scorer.to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.scorer is None or not isinstance(outputs, Mapping) or "sr" not in outputs:
            return
        set_name = pl_module.eval_set_names("val")[dataloader_idx]
        scores = self.scorer(outputs["sr"].detach(), batch["hr"], pl_module.scale)
        self._means(set_name, pl_module).update(scores)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = {}
        for set_name, metric in self.means.items():
            if metric.update_called:
                results[set_name] = metric.compute()
            metric.reset()
        if not results:
            return
        for i, (set_name, values) in enumerate(results.items()):
            for name, value in values.items():
                if i == 0:
                    pl_module.log(f"val/{name}", value.float(), prog_bar=name == "lpips")
                if len(results) > 1:
                    pl_module.log(f"val/{set_name}/{name}", value.float())
        if trainer.sanity_checking:
            return  # the untrained model must not count as the best (nor wipe a resumed one)
        for name, value in next(iter(results.values())).items():
            self.best[name] = min(self.best.get(name, float("inf")), float(value))
            pl_module.log(f"val/{name}_best", self.best[name])

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = dict(state_dict.get("best") or {})
