"""sr-report's perceptual part: the LPIPS / DISTS table and the perception–distortion figure.

SR-GAN papers compare methods on the perception–distortion plane (Blau & Michaeli, CVPR'18;
PIRM 2018): distortion on x (here PSNR, higher is better), perceptual distance on y (here
LPIPS, lower is better), so the best trade-offs sit at the bottom right. The papers of the
methods we reproduce (SRResNet / SRGAN: Ledig et al., CVPR'17) publish PSNR / SSIM / MOS
but no LPIPS, so their results appear as vertical lines at their published PSNR, not points.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sr_lightning.apps.report_common import (
    Run,
    colour,
    declutter,
    display_name,
    family,
    ordered_sets,
    ours_legend_handle,
    run_labels,
)
from sr_lightning.core.published import PublishedResult

PERCEPTUAL = ("lpips", "dists")
# published results drawn as PSNR lines: the perceptual methods' papers (no LPIPS published)
PAPER_LINES = ("srresnet", "srgan")
NET_NAMES = {"alex": "AlexNet", "vgg": "VGG16"}
# point labels stay legible where a paper's PSNR line runs through them
LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.6}


def has_lpips(run: Run) -> bool:
    return any("lpips" in values for values in run.results.values())


def perceptual_table(runs: Sequence[Run]) -> list[str]:
    """Markdown lines: per scale, method × set LPIPS / DISTS of the runs that have them."""
    lines: list[str] = []
    for scale in sorted({r.scale for r in runs}):
        at_scale = [r for r in runs if r.scale == scale and has_lpips(r)]
        if not at_scale:
            continue
        sets = ordered_sets(s for r in at_scale for s in r.results)
        nets = sorted({r.lpips_net for r in at_scale if r.lpips_net})
        lines += [
            "",
            f"### ×{scale}: LPIPS / DISTS (lower is better)",
            "",
            f"LPIPS v0.1 ({', '.join(nets) or 'alex'}), DISTS; RGB, 8-bit output, border crop "
            "= scale, mean over images (docs/metrics.md). *bicubic*: of the same LR images.",
            "",
            "| method | " + " | ".join(sets) + " | run |",
            "|---|" + "---|" * len(sets) + "---|",
        ]
        bicubic_done = any(r.is_bicubic for r in at_scale)
        for r in at_scale:
            lines.append(
                f"| {r.name} | "
                + " | ".join(_cell(r.results.get(s)) for s in sets)
                + f" | {r.label} |"
            )
        if not bicubic_done:  # the bicubic of the first run that measured it
            for r in at_scale:
                if any("lpips" in r.bicubic.get(s, {}) for s in sets):
                    cells = " | ".join(_cell(r.bicubic.get(s)) for s in sets)
                    lines.append(f"| Bicubic | {cells} | {r.label} (bicubic) |")
                    break
    return lines


def _cell(values: dict[str, float] | None) -> str:
    if not values or "lpips" not in values:
        return "–"
    dists = values.get("dists")
    return f"{values['lpips']:.4f} / " + (f"{dists:.4f}" if dists is not None else "–")


def _bicubic_point(runs: Sequence[Run], set_name: str, scale: int) -> tuple[float, float] | None:
    """(PSNR, LPIPS) of bicubic: a bicubic run, else the bicubic of any run's LR images."""
    for r in runs:
        values = r.results.get(set_name, {})
        if r.scale == scale and r.is_bicubic and "lpips" in values:
            return values["psnr_y"], values["lpips"]
    for r in runs:
        values = r.bicubic.get(set_name, {})
        if r.scale == scale and "lpips" in values:
            return values["psnr_y"], values["lpips"]
    return None


def _point(ax: Any, xy: tuple[float, float], text: str, color: str, marker: str = "o") -> Any:
    """One labelled point of the perception-distortion plane; returns its label."""
    size, edge = (80, None) if marker == "D" else (70, "black")
    ax.scatter(*xy, s=size, marker=marker, color=color, edgecolor=edge, zorder=3)
    return ax.annotate(
        text,
        xy,
        xytext=(6, 4),
        textcoords="offset points",
        fontsize=9,
        color=color,
        weight="bold",
        bbox=LABEL_BOX,
    )


def _paper_line(ax: Any, p: PublishedResult) -> None:
    """A paper's PSNR as a vertical dotted line (no LPIPS is published for the classics)."""
    ax.axvline(p.psnr, color=colour(p.method), linestyle=":", linewidth=1.4)
    ax.annotate(
        f"{display_name(p.method)} (paper) {p.psnr:.2f}",
        xy=(p.psnr, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(-3, -4),
        textcoords="offset points",
        rotation=90,
        ha="right",
        va="top",
        fontsize=8.5,
        color=colour(p.method),
        style="italic",
    )


def _plane_panel(
    ax: Any,
    runs: Sequence[Run],
    at_scale: Sequence[Run],
    set_name: str,
    scale: int,
    labels: dict,
    papers: Sequence[PublishedResult],
) -> list[Any]:
    """One set's panel: our runs, bicubic of the same LR, the papers' PSNR; returns labels."""
    texts: list[Any] = []
    xs: list[float] = []
    ys: list[float] = []
    for r in at_scale:
        values = r.results.get(set_name, {})
        if "lpips" not in values or r.is_bicubic:
            continue
        xy = (values["psnr_y"], values["lpips"])
        texts.append(_point(ax, xy, labels[id(r)], colour(r.method)))
        xs.append(xy[0])
        ys.append(xy[1])
    bicubic = _bicubic_point(runs, set_name, scale)
    if bicubic is not None:
        texts.append(_point(ax, bicubic, "Bicubic", colour("bicubic"), marker="D"))
        xs.append(bicubic[0])
        ys.append(bicubic[1])
    xs += [p.psnr for p in papers]
    if xs:
        span = max(max(xs) - min(xs), 0.5)
        ax.set_xlim(min(xs) - 0.12 * span, max(xs) + 0.3 * span)  # room for labels
    if ys:
        span = max(max(ys) - min(ys), 0.02)
        ax.set_ylim(max(0.0, min(ys) - 0.15 * span), max(ys) + 0.3 * span)
    for p in papers:
        _paper_line(ax, p)
    return texts


def plot_perception_distortion(
    runs: Sequence[Run], published: Sequence[PublishedResult], scale: int, path: Path
) -> Path:
    """LPIPS (y, lower is better) against PSNR (x) at ``scale``, a panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    at_scale = [r for r in runs if r.scale == scale and has_lpips(r)]
    sets = [
        s
        for s in ordered_sets(s for r in at_scale for s in r.results)
        if any("lpips" in r.results.get(s, {}) for r in at_scale)
    ]
    labels = run_labels(at_scale)
    nets = sorted({r.lpips_net for r in at_scale if r.lpips_net}) or ["alex"]
    fig, axes = plt.subplots(
        1, len(sets), figsize=(5.2 * len(sets), 4.6), squeeze=False, layout="constrained"
    )
    point_labels: list[list[Any]] = []
    any_paper = False
    for ax, set_name in zip(axes[0], sets, strict=True):
        papers = [
            p
            for p in published
            if p.set == set_name and p.scale == scale and family(p.method) in PAPER_LINES
        ]
        any_paper = any_paper or bool(papers)
        point_labels.append(_plane_panel(ax, runs, at_scale, set_name, scale, labels, papers))
        ax.set_title(f"{set_name} ×{scale}", fontsize=12)
        ax.set_xlabel("PSNR (dB, Y channel) — higher is better →")
        ax.set_ylabel(
            f"LPIPS ({' / '.join(NET_NAMES.get(n, n) for n in nets)}) — lower is better ↓"
        )
        ax.grid(True, alpha=0.35)
    handles = [
        ours_legend_handle(),
        Line2D(
            [],
            [],
            marker="D",
            linestyle="",
            color=colour("bicubic"),
            markersize=8,
            label="bicubic (same LR)",
        ),
    ]
    if any_paper:
        handles.append(
            Line2D([], [], color="#555555", linestyle=":", label="paper PSNR (no LPIPS published)")
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"Perception–distortion, ×{scale}: better is bottom right", fontsize=13)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()
    for texts in point_labels:
        declutter(texts)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
