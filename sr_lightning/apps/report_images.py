"""The images behind sr-report's crop figure and HTML page, and the numbers that go with them.

For one test image (``Set14/baboon``) and one group of runs (a scale and LR setting):

* the HR: the set's file, found through ``run_info.json``'s ``hr_dirs`` (older runs:
  ``$SR_DATA_DIR/<set>``), cut to a multiple of the scale as the protocol cuts it;
* each run's SR image as ``sr-eval`` saved it (``save_images=true``: ``<run>/images/<set>/``;
  an ``outputs=`` run: its folder), with that image's row of the run's ``per_image.csv``;
* bicubic: a bicubic run's saved image when there is one, else the bicubic upscale of the
  RGB LR computed here and scored as ``sr-eval outputs=`` scores an image (Y of the 8-bit RGB).
"""

from __future__ import annotations

import csv
import difflib
import functools
import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sr_lightning.apps.report_common import Run, colour, display_name, run_labels
from sr_lightning.common.errors import UserError
from sr_lightning.common.pixels import modcrop, quantize
from sr_lightning.core.metrics import score_images
from sr_lightning.data.degradation import bicubic_upscale
from sr_lightning.data.eval_pair import eval_pair
from sr_lightning.data.images import IMAGE_EXTENSIONS, load_image

log = logging.getLogger("sr_lightning.apps.report")


@dataclass
class Shown:
    """One image of a comparison: HR, bicubic or a run's SR, with its per-image numbers."""

    label: str
    colour: str
    path: Path | None  # the file it was read from (None: computed here)
    scores: dict[str, float] = field(default_factory=dict)  # a per_image.csv row; HR: none
    run: Run | None = None
    note: str = ""  # how the image was made, for the caption
    pixels: np.ndarray | None = None  # uint8 (H, W, C) when not read from ``path``

    def image(self) -> np.ndarray:
        """uint8 (H, W, C), C = 1 or 3, as the file holds it."""
        if self.pixels is None:
            self.pixels = load_image(self.path).permute(1, 2, 0).numpy()
        return self.pixels


@functools.cache
def _per_image(csv_path: Path, _mtime_ns: int) -> dict[tuple[str, str], dict[str, float]]:
    """The rows of one file, read once per version of it (``_mtime_ns`` keys the cache)."""
    with csv_path.open(newline="", encoding="utf-8") as f:
        return {
            (row.pop("set"), row.pop("image")): {k: float(v) for k, v in row.items()}
            for row in csv.DictReader(f)
        }


def per_image(run: Run) -> dict[tuple[str, str], dict[str, float]]:
    """``{(set, image): {"psnr_y": …, "ssim_y": …}}`` from the run's ``per_image.csv``."""
    path = run.dir / "per_image.csv"
    return _per_image(path, path.stat().st_mtime_ns) if path.is_file() else {}


def saved_image(run: Run, set_name: str, image: str) -> Path | None:
    """The run's SR PNG of ``set/image``, or None when it saved none."""
    folder = Path(run.path) if run.source == "outputs" and run.path else run.dir / "images"
    path = folder / set_name / f"{image}.png"
    return path if path.is_file() else None


def hr_path(runs: Sequence[Run], set_name: str, image: str) -> Path:
    """The set's HR file of ``image``: in a folder a run recorded, else ``$SR_DATA_DIR``."""
    folders = [Path(r.hr_dirs[set_name]) for r in runs if set_name in r.hr_dirs]
    if os.environ.get("SR_DATA_DIR"):
        folders.append(Path(os.environ["SR_DATA_DIR"]) / set_name)
    for folder in folders:
        for path in sorted(folder.glob(glob.escape(image) + ".*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                return path
    where = (
        ", ".join(map(str, folders)) or "no folder: the runs record none and $SR_DATA_DIR is unset"
    )
    raise UserError(
        f"{set_name}/{image}: HR image not found (looked in {where}); set $SR_DATA_DIR to the "
        "folder holding the set, or re-run sr-eval, whose run_info.json records it"
    )


def read_hr(runs: Sequence[Run], set_name: str, image: str, scale: int) -> torch.Tensor:
    """The uint8 HR (C, H, W), modcropped as the protocol cuts it."""
    return modcrop(load_image(hr_path(runs, set_name, image)), scale).contiguous()


def check_image_name(runs: Sequence[Run], name: str) -> tuple[str, str]:
    """``Set14/baboon`` -> ``("Set14", "baboon")``; a name no run scored is an error."""
    known = sorted({key for r in runs for key in per_image(r)})
    set_name, _, image = name.partition("/")
    if (set_name, image) in known:
        return set_name, image
    names = [f"{s}/{i}" for s, i in known]
    close = difflib.get_close_matches(name, names, n=3)
    sets = sorted({s for s, _ in known})
    if not image or set_name not in sets:
        hint = f"the sets of these runs: {', '.join(sets) or 'none (no per_image.csv)'}"
    else:
        images = [i for s, i in known if s == set_name]
        hint = f"{set_name} holds {', '.join(images[:12])}{' …' if len(images) > 12 else ''}"
    mean = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise UserError(f"--crops {name}: no such image in the runs' per_image.csv{mean}; {hint}")


def computed_bicubic(hr: torch.Tensor, scale: int) -> Shown:
    """Bicubic of the HR's own LR, in the HR's colours, scored as ``outputs=`` scores images."""
    hr_float, lr = eval_pair(hr.unsqueeze(0), scale)
    up = quantize(bicubic_upscale(lr, scale).double()).float()
    ((psnr, ssim),) = score_images(up, hr_float, scale).rows()
    pixels = (up[0] * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Shown(
        label=display_name("bicubic"),
        colour=colour("bicubic"),
        path=None,
        scores={"psnr_y": psnr, "ssim_y": ssim},
        note="Bicubic: computed by sr-report from the HR (no bicubic run saved this image)",
        pixels=pixels,
    )


def comparison(
    runs: Sequence[Run], set_name: str, image: str, scale: int, hr: torch.Tensor
) -> list[Shown]:
    """HR, bicubic, then the group's runs that saved ``set/image`` (in the report's order)."""
    labels = run_labels(runs)
    shown = [Shown("HR", "#000000", hr_path(runs, set_name, image))]
    shown[0].pixels = hr.permute(1, 2, 0).numpy()
    bicubic, others = [], []
    for r in runs:
        path = saved_image(r, set_name, image)
        if path is None:
            log.warning("%s: no saved image of %s/%s (save_images=true)", r.label, set_name, image)
            continue
        note = ""
        if r.channels == 1 and hr.shape[0] == 3 and not r.is_bicubic:
            note = f"{r.name}: luma model, Y from the net and CbCr from bicubic"
        scores = per_image(r).get((set_name, image), {})
        entry = Shown(labels[id(r)], colour(r.method), path, scores, r, note)
        if entry.image().shape[:2] != tuple(hr.shape[1:]):
            h, w = hr.shape[1:]
            raise UserError(
                f"{path} is {entry.image().shape[1]}x{entry.image().shape[0]}, but the HR of "
                f"{set_name}/{image} cut to a multiple of {scale} is {w}x{h}"
            )
        (bicubic if r.is_bicubic else others).append(entry)
    if not bicubic and all(r.degradation == "bicubic" for r in runs):
        bicubic = [computed_bicubic(hr, scale)]  # (a BD / DN group's bicubic needs its LR)
    return shown + bicubic + others


def group_runs(runs: Sequence[Run], set_name: str, image: str) -> list[list[Run]]:
    """The runs that scored ``set/image``, one list per (scale, LR setting)."""
    groups: dict[tuple[int, str], list[Run]] = {}
    for r in runs:
        if (set_name, image) in per_image(r):
            groups.setdefault((r.scale, r.degradation), []).append(r)
    return [groups[k] for k in sorted(groups)]
