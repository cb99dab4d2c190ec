"""sr-eval's reports: ``results.json``, ``per_image.csv``, ``run_info.json`` and the console
table, written from the per-image results of the evaluation loop (:mod:`sr_lightning.apps.eval`).

A set's numbers are the means of its images' scores; the files are written atomically, so a
reader never sees half a report.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from sr_lightning.runtime.atomic import write_atomic

__all__ = [
    "ImageResult",
    "ReportedModel",
    "SetResult",
    "device_name",
    "format_table",
    "per_image_csv",
    "per_image_rows",
    "results_json",
    "run_info",
    "write_outputs",
]


class ReportedModel(Protocol):
    """What the reports say about the evaluated model (``apps.eval.EvalModel``)."""

    source: str  # "bicubic", "checkpoint" or "weights"
    path: str | None
    generator: Any  # its ``display`` name goes into run_info.json

    @property
    def method(self) -> str: ...

    @property
    def scale(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def params(self) -> int: ...

    @property
    def architecture(self) -> dict | None: ...

    @property
    def is_bicubic(self) -> bool: ...

    def describe(self) -> str: ...


# -- results ----------------------------------------------------------------------------------


@dataclass
class ImageResult:
    """One image's scores (:func:`sr_lightning.core.metrics.score_images`) and forward time."""

    set: str
    image: str
    psnr_y: float
    ssim_y: float
    bicubic_psnr_y: float
    bicubic_ssim_y: float
    seconds: float
    # LPIPS / DISTS when enabled (sr_lightning.core.perceptual), of the model and of bicubic
    perceptual: dict[str, float] = field(default_factory=dict)
    bicubic_perceptual: dict[str, float] = field(default_factory=dict)


@dataclass
class SetResult:
    """A test set's images; its numbers are the means over them (``math.fsum``)."""

    name: str
    images: list[ImageResult] = field(default_factory=list)
    hr_dir: str | None = None  # the set's HR folder: sr-report's crops and pages read it

    def mean(self, key: str) -> float:
        return math.fsum(getattr(r, key) for r in self.images) / len(self.images)

    def perceptual_means(self, bicubic: bool = False) -> dict[str, float]:
        """Mean LPIPS / DISTS over the images (empty when they were not computed)."""
        rows = [r.bicubic_perceptual if bicubic else r.perceptual for r in self.images]
        return {k: math.fsum(row[k] for row in rows) / len(rows) for k in (rows[0] if rows else {})}

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.mean("seconds")


# -- reports ----------------------------------------------------------------------------------


def results_json(sets: Sequence[SetResult]) -> dict[str, dict[str, float | int]]:
    """``{"Set5": {"psnr_y": …, "ssim_y": …, "images": 5}, …}``: the shape tools read
    (with ``"lpips"`` / ``"dists"`` beside them when they were computed)."""
    return {
        s.name: {
            "psnr_y": s.mean("psnr_y"),
            "ssim_y": s.mean("ssim_y"),
            **s.perceptual_means(),
            "images": len(s.images),
        }
        for s in sets
    }


def per_image_rows(sets: Sequence[SetResult]) -> tuple[list[str], list[list[Any]]]:
    """The header and one row per image: set, image, psnr_y, ssim_y (, lpips, dists)."""
    extra = list(sets[0].images[0].perceptual) if sets and sets[0].images else []
    rows = [
        [r.set, r.image, r.psnr_y, r.ssim_y, *(r.perceptual[k] for k in extra)]
        for s in sets
        for r in s.images
    ]
    return ["set", "image", "psnr_y", "ssim_y", *extra], rows


def per_image_csv(sets: Sequence[SetResult]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header, rows = per_image_rows(sets)
    writer.writerow(header)
    for row in rows:
        writer.writerow([*row[:2], *(repr(v) for v in row[2:])])
    return out.getvalue()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'s' if threads != 1 else ''})"


def run_info(
    model: ReportedModel,
    sets: Sequence[SetResult],
    device: torch.device,
    tta: bool,
    lpips_net: str | None = None,
    degradation: str = "bicubic",
) -> dict[str, Any]:
    """What ``sr-report`` needs beside results.json: the model, its size, timings, and the
    LR setting (``degradation``) its numbers were measured under."""
    return {
        "method": model.method,
        "display": model.generator.display,
        "scale": model.scale,
        "channels": model.channels,
        "params": model.params,
        "source": model.source,
        "path": model.path,
        **({"architecture": model.architecture} if model.architecture else {}),
        "tta": bool(tta),
        "degradation": degradation,
        "device": device_name(device),
        "ms_per_image": {s.name: s.ms_per_image for s in sets},
        "bicubic": {
            s.name: {
                "psnr_y": s.mean("bicubic_psnr_y"),
                "ssim_y": s.mean("bicubic_ssim_y"),
                **s.perceptual_means(bicubic=True),
            }
            for s in sets
        },
        "lpips_net": lpips_net,  # the LPIPS backbone (alex | vgg), null without LPIPS
        "hr_dirs": {s.name: s.hr_dir for s in sets if s.hr_dir},
    }


def format_table(model: ReportedModel, sets: Sequence[SetResult], tta: bool) -> str:
    """The console table: set × PSNR / SSIM, with the gain over bicubic of the same LR."""
    title = f"{model.describe()}{' +TTA' if tta else ''} ({model.source}"
    title += f": {model.path})" if model.path else ")"
    extra = list(sets[0].perceptual_means()) if sets else []
    header = f"{'set':<12}{'images':>7}{'PSNR':>9}{'SSIM':>9}"
    header += "".join(f"{k.upper():>9}" for k in extra)
    header += f"{'ΔPSNR':>9}{'ΔSSIM':>9}{'ms/img':>9}"
    lines = [title, header, "-" * len(header)]
    for s in sets:
        psnr, ssim = s.mean("psnr_y"), s.mean("ssim_y")
        scores = "".join(f"{v:>9.4f}" for v in s.perceptual_means().values())
        if model.is_bicubic:
            delta = f"{'—':>9}{'—':>9}"
        else:
            dp, ds = psnr - s.mean("bicubic_psnr_y"), ssim - s.mean("bicubic_ssim_y")
            delta = f"{dp:>+9.2f}{ds:>+9.4f}"
        lines.append(
            f"{s.name:<12}{len(s.images):>7}{psnr:>9.2f}{ssim:>9.4f}{scores}{delta}"
            f"{s.ms_per_image:>9.1f}"
        )
    return "\n".join(lines)


def write_outputs(
    output_dir: Path,
    model: ReportedModel,
    sets: Sequence[SetResult],
    device: torch.device,
    tta: bool,
    lpips_net: str | None = None,
    degradation: str = "bicubic",
) -> None:
    write_atomic(output_dir / "results.json", json.dumps(results_json(sets), indent=2).encode())
    write_atomic(output_dir / "per_image.csv", per_image_csv(sets).encode())
    info = run_info(model, sets, device, tta, lpips_net, degradation)
    write_atomic(output_dir / "run_info.json", json.dumps(info, indent=2).encode())
