"""``sr-eval outputs=DIR``: score precomputed SR images with the papers' protocol, no model.

The images are ``DIR/<set>/<name>.png`` (``<name>`` as ``per_image.csv`` names the HR image,
so ``outputs=<an earlier sr-eval run>/images`` scores what ``save_images=true`` wrote): another
method's published results, or an earlier run's. Each one is scored against its set's HR
exactly as ``sr-eval`` scores a model's output: the HR modcropped to a multiple of the scale,
the 8-bit output's Y (unrounded, from RGB) against the HR's, ``scale`` border pixels cropped
(:func:`sr_lightning.core.metrics.score_images`). A grey output is taken as a luma plane and
scored against the HR's MATLAB luma (a grey HR being its own), as a luma model is: what
``save_images`` writes for a grey HR image. A luma model's colour images score a little
differently from the model itself: their Y is that of the rounded, clipped RGB. The bicubic
baseline of the same LR (the ``degradation`` setting's, or a paired set's given LR) is
measured beside it, so the reports (``results.json``, ``per_image.csv``, ``run_info.json``,
the table) are the usual ones.

A missing image, one that does not decode, or one whose size is not the modcropped HR's is an
error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from sr_lightning.apps.eval_report import ImageResult
from sr_lightning.common.errors import UserError
from sr_lightning.core.metrics import score_images
from sr_lightning.data.degradation import bicubic_upscale, to_float
from sr_lightning.data.degradations.model import Degradation
from sr_lightning.data.eval_pair import eval_pair
from sr_lightning.data.images import ImageLoadError, load_image

__all__ = ["OutputsModel", "output_path", "score_output"]

# what a run over given outputs cannot take: they are about a model
MODEL_KEYS = ("ckpt_path", "weights", "tta", "save_images")


@dataclass
class OutputsModel:
    """The reports' view of a folder of SR images (``apps.eval_report.ReportedModel``)."""

    path: str
    scale: int
    source: str = "outputs"
    method: str = "outputs"
    channels: int = 3  # scored as RGB images: the Y of the 8-bit RGB output
    params: int | None = None
    architecture: dict | None = None
    is_bicubic: bool = False
    generator: Any = field(default_factory=lambda: SimpleNamespace(display=None))

    def describe(self) -> str:
        return f"outputs x{self.scale}"


def check_outputs_request(cfg: Any) -> int:
    """The scale of an ``outputs=`` run; model settings with it are errors."""
    given = [k for k in MODEL_KEYS if cfg.get(k)]
    if given or cfg.get("model") is not None:
        named = ", ".join([*given, *(["model"] if cfg.get("model") is not None else [])])
        raise UserError(
            f"outputs= scores the images in {cfg.outputs}; drop {named} (no model is run)."
        )
    if cfg.get("scale") is None:
        raise UserError("outputs= needs the scale the images were made at: add scale=2, 3 or 4")
    folder = Path(str(cfg.outputs)).expanduser()
    if not folder.is_dir():
        raise UserError(f"outputs={cfg.outputs}: no such folder (expected <dir>/<set>/<name>.png)")
    return int(cfg.scale)


def output_path(folder: Path, set_name: str, name: str) -> Path:
    return folder / set_name / f"{name}.png"


def score_output(
    item: dict,
    set_name: str,
    folder: Path,
    scale: int,
    device: torch.device,
    degradation: Degradation | None,
) -> ImageResult:
    """One HR image (an item of ``apps.eval.BenchmarkImages``) against its given SR image."""
    path = output_path(folder, set_name, item["name"])
    if not path.is_file():
        raise UserError(f"{set_name}/{item['name']}: no SR image {path}")
    try:
        output = load_image(path)
    except ImageLoadError as err:
        raise UserError(f"SR image {path} does not decode: {err.reason}") from err
    raw = item["image"].to(device).unsqueeze(0)
    given = item["lr"].to(device).unsqueeze(0) if "lr" in item else None
    # a grey output is a luma plane (a luma model's output of a grey HR): scored against the
    # HR's luma, as sr-eval scores that model; a colour one as RGB
    channels = 1 if output.shape[0] == 1 else 3
    hr, lr = eval_pair(raw, scale, channels, degradation, [item["name"]], given)
    if tuple(output.shape[-2:]) != tuple(hr.shape[-2:]):
        h, w = hr.shape[-2:]
        raise UserError(
            f"SR image {path} is {output.shape[-1]}x{output.shape[-2]}; the HR image "
            f"{item['path']} cut to a multiple of {scale} is {w}x{h}"
        )
    sr = to_float(output.to(device)).unsqueeze(0)
    ((psnr, ssim),) = score_images(sr, hr, scale).rows()
    ((bic_psnr, bic_ssim),) = score_images(bicubic_upscale(lr, scale), hr, scale).rows()
    return ImageResult(
        set_name,
        item["name"],
        psnr_y=psnr,
        ssim_y=ssim,
        bicubic_psnr_y=bic_psnr,
        bicubic_ssim_y=bic_ssim,
        seconds=0.0,  # no forward pass
    )
