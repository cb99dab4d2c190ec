"""sr-report's zoomed-crop figure: one test image with a marked region, and that region of HR,
bicubic and each run side by side, every crop with its own per-image PSNR / SSIM.

* The region is ``x,y,w,h`` in pixels of the HR (cut to a multiple of the scale), or picked
  automatically (:func:`auto_region`): among the square windows of side ``min(H, W) / 5``
  inside the border the metrics crop (``scale`` pixels), the one where the images differ most
  from each other, i.e. with the largest sum over its pixels of the variance across the shown
  images (bicubic and the runs) of their absolute Y error against the HR. With one image
  shown, its largest summed error. Ties go to the top-most, then left-most window.
* Each crop is enlarged by an integer factor with nearest neighbour (pixel blocks, in the PNG
  and in the PDF alike); the numbers under it are its row of ``per_image.csv``.
* Written as PNG (300 dpi) and PDF with embedded TrueType text (``pdf.fonttype`` 42), at the
  width of a two-column paper's ``figure*`` (6.875 in, CVPR / IEEE; ``--crop-width 3.3``
  for one column).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr_lightning.apps.report_common import Run
from sr_lightning.apps.report_images import (
    Shown,
    check_image_name,
    comparison,
    group_runs,
    read_hr,
)
from sr_lightning.common.color import rgb_to_y
from sr_lightning.common.errors import UserError

PAPER_WIDTH_IN = 6.875  # a two-column paper's text width (CVPR, IEEE figure*)
DPI = 300
LABEL_IN = 0.30  # two lines of 6.5 pt text under each crop
MIN_CROP_IN = 1.0  # narrower crops go on two rows, or under the overview (one column)
CAPTION_PT = 6.0
GAP_IN = 0.05
RECT_COLOUR = "#e41a1c"


@dataclass(frozen=True)
class Region:
    """A window in HR pixels."""

    x: int
    y: int
    w: int
    h: int

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"

    def cut(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.h, self.x : self.x + self.w]


def parse_region(text: str) -> Region:
    """``"x,y,w,h"`` (integers, w and h positive) -> a Region; anything else a ValueError."""
    parts = text.split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        x = y = w = h = -1
    if len(parts) != 4 or min(x, y) < 0 or min(w, h) < 1:
        raise ValueError(
            f"{text!r} is not a region: give x,y,w,h in HR pixels (integers, w and h >= 1), "
            "e.g. 120,80,64,64"
        )
    return Region(x, y, w, h)


def check_region(region: Region, where: str, height: int, width: int) -> Region:
    if region.x + region.w > width or region.y + region.h > height:
        raise UserError(
            f"--crop-region {region} is outside {where}, whose HR is {width}x{height} "
            f"(x + w <= {width}, y + h <= {height})"
        )
    return region


def _luma(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).double() / 255.0
    return rgb_to_y(x)[0] if x.shape[0] == 3 else x[0]


def auto_region(hr: np.ndarray, shown: Sequence[np.ndarray], border: int) -> Region:
    """The window where the images differ most (the rule of the module's docstring)."""
    height, width = hr.shape[:2]
    side = max(4, round(min(height, width) / 5))
    inner_h, inner_w = height - 2 * border, width - 2 * border
    if inner_h < side or inner_w < side:
        border, inner_h, inner_w = 0, height, width
        side = min(side, height, width)
    ref = _luma(hr)
    errors = torch.stack([(_luma(image) - ref).abs() for image in shown])
    score = errors.var(dim=0, unbiased=False) if len(shown) > 1 else errors[0]
    score = score[border : border + inner_h, border : border + inner_w]
    table = torch.nn.functional.pad(score.cumsum(0).cumsum(1), (1, 0, 1, 0))
    sums = table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]
    best = int(torch.argmax(sums))  # the first maximum: top-most, then left-most
    row, col = divmod(best, sums.shape[1])
    return Region(border + col, border + row, side, side)


def _plain(image: np.ndarray) -> np.ndarray:
    """(H, W) for a grey image, as imshow takes it; (H, W, 3) for colour."""
    return image[:, :, 0] if image.shape[2] == 1 else image


def zoom(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every pixel a ``factor`` x ``factor`` block."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def score_text(scores: dict[str, float]) -> str:
    """The numbers under a crop: ``27.54 dB / 0.7736`` (and ``LPIPS 0.2301``)."""
    if not scores:
        return "PSNR / SSIM"
    text = f"{scores['psnr_y']:.2f} dB / {scores['ssim_y']:.4f}"
    if "lpips" in scores:
        text += f"  LPIPS {scores['lpips']:.4f}"
    return text


Box = tuple[float, float, float, float]  # left, top (from the figure's top), width, height


def _side_by_side(n: int, aspect_full: float, aspect_crop: float, width_in: float) -> dict:
    """The overview on the left spanning the rows, the crops in one or two rows right of it."""
    for rows in (1, 2):
        cols = math.ceil(n / rows)
        # width = overview (aspect_full * (rows * c + (rows - 1) labels)) + crops + gaps
        gaps = (cols + 1) * GAP_IN
        c = (width_in - gaps - aspect_full * (rows - 1) * LABEL_IN) / (
            rows * aspect_full + cols * aspect_crop
        )
        if c * aspect_crop >= MIN_CROP_IN or n < 3:
            break
    over_h = rows * c + (rows - 1) * LABEL_IN
    over: Box = (GAP_IN / 2, 0.0, over_h * aspect_full, over_h)
    left0 = over[0] + over[2] + GAP_IN
    crops: list[Box] = [
        (left0 + (i % cols) * (c * aspect_crop + GAP_IN), (i // cols) * (c + LABEL_IN),
         c * aspect_crop, c)
        for i in range(n)
    ]  # fmt: skip
    return {"overview": over, "crops": crops, "height": rows * (c + LABEL_IN)}


def _stacked(n: int, aspect_full: float, aspect_crop: float, width_in: float) -> dict:
    """The overview on top, the crops in one row under it (narrow, one-column figures)."""
    c = (width_in - (n + 1) * GAP_IN) / (n * aspect_crop)
    over_h = min((width_in - GAP_IN) / aspect_full, 0.6 * width_in)
    over_w = over_h * aspect_full
    over: Box = ((width_in - over_w) / 2, 0.0, over_w, over_h)
    top = over_h + LABEL_IN
    crops: list[Box] = [
        (GAP_IN + i * (c * aspect_crop + GAP_IN), top, c * aspect_crop, c) for i in range(n)
    ]
    return {"overview": over, "crops": crops, "height": top + c + LABEL_IN}


def _layout(n: int, aspect_full: float, aspect_crop: float, width_in: float) -> dict[str, Any]:
    """Boxes in inches: beside the overview while the crops stay ``MIN_CROP_IN`` wide, else
    under it."""
    lay = _side_by_side(n, aspect_full, aspect_crop, width_in)
    if lay["crops"][0][2] < MIN_CROP_IN and n >= 3:
        lay = _stacked(n, aspect_full, aspect_crop, width_in)
    return lay


def _fitting(text: str, width_in: float, most: float) -> float:
    """A font size (pt) at most ``most`` at which ``text`` fits ``width_in`` (DejaVu Sans
    averages about 0.6 em a character)."""
    return min(most, 72.0 * width_in / (0.6 * max(len(text), 1)))


def _caption_height(caption: str, width_in: float, size: float = CAPTION_PT) -> float:
    if not caption:
        return 0.0
    lines = math.ceil(len(caption) * 0.6 * size / 72.0 / (width_in - 0.1))
    return lines * 1.3 * size / 72.0 + 0.08


def _label(ax: Any, entry: Shown, width_in: float) -> None:
    """The name (bold, the method's colour) and the numbers under a crop."""
    scores = score_text(entry.scores)
    for text, dy, size, gid in (
        (entry.label, -2, _fitting(entry.label, width_in, 7), "label"),
        (scores, -11, _fitting(scores, width_in, 6.5), "scores"),
    ):
        ax.annotate(
            text,
            xy=(0.5, 0.0),
            xycoords="axes fraction",
            xytext=(0, dy),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=size,
            color=entry.colour if gid == "label" else "black",
            weight="bold" if gid == "label" else "normal",
            gid=gid,
        )


def build_figure(
    title: str,
    shown: Sequence[Shown],
    region: Region,
    width_in: float = PAPER_WIDTH_IN,
    caption: str = "",
) -> Any:
    """The matplotlib figure: overview with the region, then a labelled crop per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    images = [_plain(s.image()) for s in shown]
    lay = _layout(
        len(shown), images[0].shape[1] / images[0].shape[0], region.w / region.h, width_in
    )
    fig_h = 0.04 + lay["height"] + _caption_height(caption, width_in)
    fig = plt.figure(figsize=(width_in, fig_h))

    def axes(box: Box) -> Any:
        left, top, w, h = box
        bottom = fig_h - 0.02 - top - h
        ax = fig.add_axes((left / width_in, bottom / fig_h, w / width_in, h / fig_h))
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    ax = axes(lay["overview"])
    ax.imshow(images[0], cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
    outline = Rectangle((region.x - 0.5, region.y - 0.5), region.w, region.h, fill=False)
    ax.add_patch(outline)
    outline.set(edgecolor=RECT_COLOUR, linewidth=1.0)
    ax.set_xlabel(title, fontsize=_fitting(title, lay["overview"][2], 7), labelpad=2)
    factor = zoom_factor(lay["crops"][0][2], region)
    for entry, image, box in zip(shown, images, lay["crops"], strict=True):
        ax = axes(box)
        # "none": the PDF embeds the enlarged pixels as they are; the PNG samples them nearest
        ax.imshow(
            zoom(region.cut(image), factor), cmap="gray", vmin=0, vmax=255, interpolation="none"
        )
        for spine in ax.spines.values():
            spine.set_edgecolor(entry.colour)
            spine.set_linewidth(1.2)
        _label(ax, entry, box[2])
    if caption:
        fig.text(0.01, 0.04 / fig_h, caption, fontsize=CAPTION_PT, va="bottom", wrap=True)
    return fig


def zoom_factor(crop_w_in: float, region: Region) -> int:
    """The integer enlargement that fills a crop panel at the figure's resolution."""
    return max(1, math.ceil(crop_w_in * DPI / region.w))


def figure_zoom(shown: Sequence[Shown], region: Region, width_in: float) -> int:
    full = shown[0].image()
    lay = _layout(len(shown), full.shape[1] / full.shape[0], region.w / region.h, width_in)
    return zoom_factor(lay["crops"][0][2], region)


def caption_for(shown: Sequence[Shown], region: Region, picked: bool, factor: int) -> str:
    how = "picked: the largest variance of the error across methods" if picked else "given"
    notes = "; ".join(s.note for s in shown if s.note)
    return (
        f"Region x={region.x}, y={region.y}, {region.w}x{region.h} HR pixels ({how}), enlarged "
        f"x{factor} (nearest neighbour). PSNR (dB) / SSIM on Y from per_image.csv."
        + (f" {notes}." if notes else "")
    )


def crop_figure(
    group: Sequence[Run],
    set_name: str,
    image: str,
    region: Region | None = None,
    width_in: float = PAPER_WIDTH_IN,
) -> tuple[Any, str] | None:
    """The figure of ``set/image`` for runs of one scale and LR setting, and its file tag
    (``x3``, ``x3_bd``); None when none of them saved the image."""
    scale, setting = group[0].scale, group[0].degradation
    hr = read_hr(group, set_name, image, scale)
    shown = comparison(group, set_name, image, scale, hr)
    if not any(s.run for s in shown):
        return None
    where = f"{set_name}/{image} ×{scale}" + ("" if setting == "bicubic" else f" {setting.upper()}")
    picked = region is None
    if region is not None:
        check_region(region, where, *hr.shape[1:])
    else:
        region = auto_region(shown[0].image(), [s.image() for s in shown[1:]], scale)
    caption = caption_for(shown, region, picked, figure_zoom(shown, region, width_in))
    fig = build_figure(where, shown, region, width_in, caption)
    return fig, f"x{scale}" + ("" if setting == "bicubic" else f"_{setting}")


def write_crop_figures(
    runs: Sequence[Run],
    names: Sequence[str],
    regions: Sequence[Region],
    out: Path,
    width_in: float = PAPER_WIDTH_IN,
) -> list[Path]:
    """``crops_<set>_<image>_x<s>.png`` and ``.pdf`` per name and (scale, LR setting)."""
    import matplotlib.pyplot as plt

    if regions and len(regions) not in (1, len(names)):
        raise UserError(
            f"--crop-region was given {len(regions)} times for {len(names)} --crops images: "
            "give one region for all, or one per image in the same order"
        )
    written: list[Path] = []
    for i, name in enumerate(names):
        set_name, image = check_image_name(runs, name)
        before = len(written)
        for group in group_runs(runs, set_name, image):
            region = regions[min(i, len(regions) - 1)] if regions else None
            made = crop_figure(group, set_name, image, region, width_in)
            if made is None:
                continue  # no run of this scale saved the image
            fig, tag = made
            stem = out / f"crops_{set_name}_{image.replace('/', '_')}_{tag}"
            with plt.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
                for suffix in (".png", ".pdf"):
                    fig.savefig(stem.with_suffix(suffix), dpi=DPI)
            plt.close(fig)
            written += [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
        if len(written) == before:
            raise UserError(
                f"--crops {name}: no run saved that image; run sr-eval with save_images=true "
                "(or score a folder of SR images with sr-eval outputs=)"
            )
    return written
