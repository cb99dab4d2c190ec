"""What sr-report's two parts share: the runs, method names and colours, figure helpers.

:mod:`sr_lightning.apps.report` (the PSNR table and figures, and the command) and
:mod:`sr_lightning.apps.report_perceptual` (LPIPS / DISTS) both import this module and not each
other.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sr_lightning.core.config import CONF_DIR

SET_ORDER = ("Set5", "Set14", "BSD100", "Urban100")
# colours of methods whose config names none (tab10's last four), picked by the name
DEFAULT_COLOURS = ("#8c564b", "#e377c2", "#bcbd22", "#17becf")


def method_styles() -> dict[str, dict[str, str]]:
    """``{method: {"name", "colour"}}``: the ``display`` entries of conf/model/*.yaml (the
    configs name and colour the methods, this file names none), then those runs brought."""
    merged = {method: dict(style) for method, style in config_styles().items()}
    for method, style in _RUN_STYLES.items():
        merged.setdefault(method, {}).update(style)
    return merged


@functools.cache
def config_styles() -> dict[str, dict[str, str]]:
    styles: dict[str, dict[str, str]] = {}
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        _add_style(styles, cfg.get("method"), cfg.get("display"))
    return styles


def add_run_style(method: Any, display: Any) -> None:
    """A run's own ``model.display`` (a user's method, from its saved config)."""
    _add_style(_RUN_STYLES, method, display)


def _add_style(styles: dict, method: Any, display: Any) -> None:
    if not isinstance(method, str) or not display:
        return
    entry = {k: str(display[k]) for k in ("name", "colour") if display.get(k)}
    styles.setdefault(method.lower(), {}).update(entry)


_RUN_STYLES: dict[str, dict[str, str]] = {}


@dataclass
class Run:
    """One evaluation run: what was evaluated, and its numbers per set."""

    dir: Path
    label: str
    method: str
    scale: int
    results: dict[str, dict[str, float]]
    params: int | None = None
    channels: int | None = None
    tta: bool = False
    device: str | None = None
    ms_per_image: dict[str, float] = field(default_factory=dict)
    bicubic: dict[str, dict[str, float]] = field(default_factory=dict)
    lpips_net: str | None = None  # the LPIPS backbone sr-eval used (alex | vgg)
    degradation: str = "bicubic"  # the LR setting (degradation=) of its numbers
    source: str | None = None  # checkpoint | weights | bicubic | outputs (run_info.json)
    path: str | None = None  # the checkpoint, weights or (source outputs) SR image folder
    hr_dirs: dict[str, str] = field(default_factory=dict)  # set -> its HR folder

    @property
    def name(self) -> str:
        return display_name(self.method) + ("+" if self.tta else "")

    @property
    def is_bicubic(self) -> bool:
        return self.method.lower() == "bicubic"


def display_name(method: str) -> str:
    return method_styles().get(method.lower(), {}).get("name", method)


def family(method: str) -> str:
    """``SRCNN-915`` and ``srcnn`` share a colour."""
    return method.lower().split("-")[0].rstrip("+")


def colour(method: str) -> str:
    """The configured colour of the method's family, else a default one chosen by name."""
    styles = method_styles()
    fam = family(method)
    for key in (method.lower(), fam):
        if "colour" in styles.get(key, {}):
            return styles[key]["colour"]
    return DEFAULT_COLOURS[sum(map(ord, fam)) % len(DEFAULT_COLOURS)]


def ordered_sets(names: Iterable[str]) -> list[str]:
    """The standard sets first, in the papers' order, then the others alphabetically."""
    unique = set(names)
    return [s for s in SET_ORDER if s in unique] + sorted(unique - set(SET_ORDER))


def run_labels(runs: Sequence[Run]) -> dict[int, str]:
    """Point labels: the method name, plus the run dir where a method appears twice."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.name] = counts.get(r.name, 0) + 1
    return {id(r): r.name if counts[r.name] == 1 else f"{r.name} ({r.label})" for r in runs}


def declutter(texts: list[Any], step: float = 11.0, tries: int = 8) -> None:
    """Move point labels down, a line at a time, until they overlap no earlier label."""
    placed = []
    for text in sorted(texts, key=lambda t: -t.xy[1]):
        renderer = text.figure.canvas.get_renderer()
        for _ in range(tries):
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            dx, dy = text.xyann
            text.xyann = (dx, dy - step)
        placed.append(text.get_window_extent(renderer))


def ours_legend_handle():
    """The legend entry of this project's evaluated runs, the same in every figure."""
    from matplotlib.lines import Line2D

    return Line2D(
        [],
        [],
        marker="o",
        linestyle="",
        markerfacecolor="#bbbbbb",
        markeredgecolor="black",
        markersize=8,
        label="ours (sr-eval)",
    )
