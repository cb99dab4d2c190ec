"""sr-report: many ``sr-eval`` runs in one markdown table and the figures SR papers show.

``sr-report DIR...`` finds every ``results.json`` under the given folders (a multirun sweep
dir, several run dirs, ``logs/eval``), reads each run's ``run_info.json`` (method, scale,
parameters, time per image; written by ``sr-eval``) or, failing that, its
``.hydra/config.yaml``, and writes to ``--out`` (default ``<first DIR>/report``):

* ``report.md``: per scale, a table of method × set (PSNR / SSIM) with the papers' numbers
  (:mod:`sr_lightning.core.published`) beside ours;
* ``psnr_vs_params_x<s>.png`` and ``psnr_vs_time_x<s>.png``: PSNR against parameter count
  and against inference time, one panel per set, our runs filled, the papers' hollow, and
  bicubic as a dashed line;
* with LPIPS in the runs (``sr-eval perceptual.lpips.enabled``): a table of LPIPS / DISTS and
  ``perception_distortion_x<s>.png``, the perception–distortion plane (Blau & Michaeli,
  CVPR'18) of :mod:`sr_lightning.apps.report_perceptual`;
* with ``--crops Set14/baboon``: ``crops_Set14_baboon_x<s>.png`` / ``.pdf``, the zoomed-crop
  figure of :mod:`sr_lightning.apps.report_crops`;
* ``report.html``: the same tables and figures, and a viewer per test image that compares any
  two runs (or HR) side by side or under a slider (:mod:`sr_lightning.apps.report_html`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sr_lightning.apps.report_common import (
    Run,
    add_run_style,
    colour,
    declutter,
    display_name,
    ordered_sets,
    ours_legend_handle,
    run_labels,
)
from sr_lightning.apps.report_crops import (
    PAPER_WIDTH_IN,
    Region,
    parse_region,
    write_crop_figures,
)
from sr_lightning.apps.report_html import write_html
from sr_lightning.apps.report_perceptual import (
    has_lpips,
    perceptual_table,
    plot_perception_distortion,
)
from sr_lightning.core.published import PublishedResult, load_published
from sr_lightning.runtime.errors import (
    EXIT_USER_ERROR,
    is_user_error,
    print_user_error,
    show_tracebacks,
)

log = logging.getLogger("sr_lightning.apps.report")

# -- reading runs -------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err


def _info_from_hydra(run_dir: Path) -> dict[str, Any]:
    """method / scale / channels from a run's saved config (runs without run_info.json)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    info: dict[str, Any] = {}
    add_run_style(
        OmegaConf.select(cfg, "model.method", default=None),
        OmegaConf.select(cfg, "model.display", default=None),
    )
    for key, where in (
        ("method", "model.method"),
        ("scale", "scale"),
        ("channels", "channels"),
        ("tta", "tta"),
        ("degradation", "degradation.name"),
    ):
        try:
            value = OmegaConf.select(cfg, where, throw_on_resolution_failure=False)
        except Exception:  # an interpolation that only resolves inside the app
            value = None
        if value is not None:
            info[key] = value
    return info


def read_run(results_path: Path, root: Path) -> Run | None:
    """A run from its ``results.json`` and sibling metadata; None (with a warning) if unusable."""
    run_dir = results_path.parent
    results = _read_json(results_path)
    if not isinstance(results, dict) or not all(
        isinstance(v, dict) and "psnr_y" in v for v in results.values()
    ):
        log.warning("%s is not an sr-eval results.json; skipped", results_path)
        return None
    info_path = run_dir / "run_info.json"
    info = _read_json(info_path) if info_path.is_file() else _info_from_hydra(run_dir)
    add_run_style(info.get("method"), info.get("display"))
    if info.get("method") is None or info.get("scale") is None:
        log.warning("%s: method or scale unknown (no run_info.json); skipped", run_dir)
        return None
    label = run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name
    return Run(
        dir=run_dir,
        label=label or run_dir.name,
        method=str(info["method"]),
        scale=int(info["scale"]),
        results=results,
        params=info.get("params"),
        channels=info.get("channels"),
        tta=bool(info.get("tta", False)),
        device=info.get("device"),
        ms_per_image=dict(info.get("ms_per_image") or {}),
        bicubic=dict(info.get("bicubic") or {}),
        lpips_net=info.get("lpips_net"),
        degradation=str(
            info.get("degradation") or _info_from_hydra(run_dir).get("degradation") or "bicubic"
        ),
        source=info.get("source"),
        path=info.get("path"),
        hr_dirs=dict(info.get("hr_dirs") or {}),
    )


def find_runs(dirs: Sequence[str | Path]) -> list[Run]:
    """Every run under ``dirs`` (searched recursively), sorted by scale, size and name."""
    runs = []
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"not a directory: {root}")
        for path in sorted(root.rglob("results.json")):
            run = read_run(path, root)
            if run is not None:
                runs.append(run)
    if not runs:
        raise FileNotFoundError(
            f"no sr-eval results.json under {', '.join(map(str, dirs))}; run sr-eval first"
        )
    return sorted(runs, key=lambda r: (r.scale, r.params or 0, r.method, r.label))


# -- the table -----------------------------------------------------------------------------------


def _cell(psnr: float | None, ssim: float | None) -> str:
    if psnr is None:
        return "–"
    return f"{psnr:.2f} / {ssim:.4f}" if ssim is not None else f"{psnr:.2f} / –"


def _mean_ms(run: Run) -> float | None:
    """Time per image averaged over all the run's images."""
    pairs = [
        (run.ms_per_image[s], run.results[s].get("images", 1))
        for s in run.results
        if s in run.ms_per_image
    ]
    total = sum(n for _, n in pairs)
    return sum(ms * n for ms, n in pairs) / total if total else None


def markdown_table(runs: Sequence[Run], published: Sequence[PublishedResult]) -> str:
    """Per scale: method × set (PSNR dB / SSIM, Y channel), ours and the papers'."""
    lines = [
        "# Evaluation report",
        "",
        "PSNR (dB) / SSIM on the Y channel, border crop = scale, mean over images. "
        "*ours*: this project's `sr-eval` runs; *paper*: the published tables "
        "(`sr_lightning/core/published.py`).",
    ]
    for scale, setting in settings(runs):
        at_scale = [r for r in runs if (r.scale, r.degradation) == (scale, setting)]
        sets = ordered_sets(s for r in at_scale for s in r.results)
        lines += ["", f"## ×{scale}{'' if setting == 'bicubic' else f', {setting.upper()}'}", ""]
        lines.append("| method | source | params | " + " | ".join(sets) + " | ms/img | run |")
        lines.append("|---|---|---:|" + "---|" * len(sets) + "---:|---|")
        for r in at_scale:
            cells = [
                _cell(r.results[s]["psnr_y"], r.results[s].get("ssim_y")) if s in r.results else "–"
                for s in sets
            ]
            ms = _mean_ms(r)
            lines.append(
                f"| {r.name} | ours | {_params(r.params)} | "
                + " | ".join(cells)
                + f" | {f'{ms:.1f}' if ms is not None else '–'} | {r.label} |"
            )
        rows: dict[tuple[str, str], dict[str, PublishedResult]] = {}
        for p in published:
            if p.scale == scale and p.degradation == setting and p.set in sets:
                rows.setdefault((p.method, p.source), {})[p.set] = p
        for (method, source), by_set in sorted(
            rows.items(), key=lambda kv: (next(iter(kv[1].values())).params or 0, kv[0])
        ):
            first = next(iter(by_set.values()))
            cells = [_cell(by_set[s].psnr, by_set[s].ssim) if s in by_set else "–" for s in sets]
            lines.append(
                f"| {display_name(method)} | paper ({source}) | {_params(first.params)} | "
                + " | ".join(cells)
                + " | – | |"
            )
    devices = sorted({r.device for r in runs if r.device})
    if devices:
        lines += ["", f"Times: forward pass per image on {'; '.join(devices)}."]
    lines += perceptual_table(runs)
    return "\n".join(lines) + "\n"


def settings(runs: Sequence[Run]) -> list[tuple[int, str]]:
    """The (scale, degradation) groups of ``runs``: a table section and figures each."""
    return sorted(
        {(r.scale, r.degradation) for r in runs}, key=lambda k: (k[0], k[1] != "bicubic", k[1])
    )


def _params(n: int | None) -> str:
    if n is None:
        return "–"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 1000:
        return f"{n / 1e3:.1f} k"
    return str(n)


# -- the figures ---------------------------------------------------------------------------------


def _bicubic_level(
    runs: Sequence[Run], published: Sequence[PublishedResult], set_name: str, scale: int
) -> tuple[float | None, str]:
    """Bicubic PSNR for a panel: measured in our runs when possible, else the papers'."""
    for r in runs:
        if r.scale == scale and r.is_bicubic and set_name in r.results:
            return r.results[set_name]["psnr_y"], "bicubic"
    for r in runs:
        if r.scale == scale and set_name in r.bicubic:
            return r.bicubic[set_name]["psnr_y"], "bicubic"
    for p in published:
        if p.method.lower() == "bicubic" and p.set == set_name and p.scale == scale:
            return p.psnr, "bicubic (paper)"
    return None, ""


def _tick_label(value: float, _pos: int) -> str:
    """1k / 10k / 1M for parameters, 0.1 / 10 / 1000 for milliseconds."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


def _label_right_edge(ax: Any, labels: list[tuple[float, str, str]]) -> None:
    """Labels for horizontal lines, just outside the right edge, pushed apart to stay legible."""
    if not labels:
        return
    lo, hi = ax.get_ylim()
    gap = 0.06 * (hi - lo)  # about one line of 8.5 pt text in a 4.4 in tall figure
    placed: list[float] = []
    for y, text, col in sorted(labels):
        target = max(y, placed[-1] + gap) if placed else y
        placed.append(target)
        ax.annotate(
            text,
            xy=(1.0, y),
            xycoords=("axes fraction", "data"),
            xytext=(1.0, target),
            textcoords=("axes fraction", "data"),
            ha="left",
            va="center",
            fontsize=8.5,
            color=col,
            style="italic",
            annotation_clip=False,
        )


def _plot_runs(ax: Any, runs: Sequence[Run], set_name: str, x: str, labels: dict) -> dict:
    """Our runs as points on one panel: what was drawn (xs, ys, label texts, bicubic?)."""
    drawn: dict[str, Any] = {"xs": [], "ys": [], "texts": [], "bicubic": False}
    for r in runs:
        if set_name not in r.results:
            continue
        value = r.params if x == "params" else r.ms_per_image.get(set_name)
        if not value or value <= 0:
            continue  # bicubic has no parameters: it is the dashed line
        psnr = r.results[set_name]["psnr_y"]
        drawn["bicubic"] = drawn["bicubic"] or r.is_bicubic
        ax.scatter(value, psnr, s=70, color=colour(r.method), edgecolor="black", zorder=3)
        drawn["texts"].append(
            ax.annotate(
                labels[id(r)],
                (value, psnr),
                xytext=(6, 4),
                textcoords="offset points",
                fontsize=9,
                color=colour(r.method),
                weight="bold",
            )
        )
        drawn["xs"].append(value)
        drawn["ys"].append(psnr)
    return drawn


def _plot_papers(ax: Any, papers: Sequence[PublishedResult], x: str, drawn: dict) -> list:
    """The papers' numbers: squares at their parameter count, else a dotted level (returned
    as a right-edge label)."""
    side_labels: list[tuple[float, str, str]] = []  # (psnr, text, colour) at the right edge
    for p in papers:
        if x == "params" and p.params:
            ax.scatter(
                p.params,
                p.psnr,
                s=70,
                marker="s",
                facecolor="white",
                edgecolor=colour(p.method),
                linewidth=2,
                zorder=3,
            )
            drawn["texts"].append(
                ax.annotate(
                    display_name(p.method),
                    (p.params, p.psnr),
                    xytext=(6, -12),
                    textcoords="offset points",
                    fontsize=8.5,
                    color=colour(p.method),
                    style="italic",
                )
            )
            drawn["xs"].append(p.params)
        else:
            ax.axhline(p.psnr, color=colour(p.method), linestyle=":", linewidth=1.4)
            side_labels.append((p.psnr, f"{display_name(p.method)} (paper)", colour(p.method)))
        drawn["ys"].append(p.psnr)
    return side_labels


def _finish_axis(ax: Any, drawn: dict, title: str, x: str) -> None:
    """Log x axis with room for labels, y range around what was drawn, titles and grid."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    xs, ys = drawn["xs"], drawn["ys"]
    ax.set_xscale("log")
    if xs:
        lo = min(xs) / 3
        ax.set_xlim(lo, max(max(xs) * 4, lo * 100))  # room for labels; two decades at least
    ax.xaxis.set_major_formatter(FuncFormatter(_tick_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if ys:
        span = max(max(ys) - min(ys), 0.5)
        ax.set_ylim(min(ys) - 0.12 * span, max(ys) + 0.15 * span)
    ax.set_title(title, fontsize=12)
    ax.set_xlabel("parameters" if x == "params" else "inference time per image (ms)")
    ax.set_ylabel("PSNR (dB, Y channel)")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def _legend_handles(x: str) -> list:
    from matplotlib.lines import Line2D

    handles = [
        ours_legend_handle(),
        Line2D([], [], color=colour("bicubic"), linestyle="--", label="bicubic"),
    ]
    if x == "params":
        paper = Line2D(
            [],
            [],
            marker="s",
            linestyle="",
            markerfacecolor="white",
            markeredgecolor="#555555",
            markersize=8,
            label="paper",
        )
    else:
        paper = Line2D([], [], color="#555555", linestyle=":", label="paper (no time)")
    handles.insert(1, paper)
    return handles


def plot_scale(
    runs: Sequence[Run],
    published: Sequence[PublishedResult],
    scale: int,
    x: str,
    path: Path,
) -> Path:
    """One figure: PSNR against ``x`` ("params" or "time") at ``scale``, a panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at_scale = [r for r in runs if r.scale == scale]
    sets = ordered_sets(s for r in at_scale for s in r.results)
    labels = run_labels(at_scale)
    point_labels: list[list[Any]] = []
    fig, axes = plt.subplots(
        1, len(sets), figsize=(5.2 * len(sets), 4.4), squeeze=False, layout="constrained"
    )
    for ax, set_name in zip(axes[0], sets, strict=True):
        drawn = _plot_runs(ax, at_scale, set_name, x, labels)
        papers = [
            p
            for p in published
            if p.set == set_name and p.scale == scale and p.method.lower() != "bicubic"
        ]
        side_labels = _plot_papers(ax, papers, x, drawn)
        level, text = _bicubic_level(runs, published, set_name, scale)
        if level is not None:
            ax.axhline(level, color=colour("bicubic"), linestyle="--", linewidth=1.4)
            if not drawn["bicubic"]:
                side_labels.append((level, f"{text} {level:.2f}", colour("bicubic")))
            drawn["ys"].append(level)
        _finish_axis(ax, drawn, f"{set_name} ×{scale}", x)
        _label_right_edge(ax, side_labels)
        point_labels.append(drawn["texts"])
    handles = _legend_handles(x)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    what = "parameters" if x == "params" else "inference time"
    title = f"PSNR vs {what}, ×{scale}"
    if x == "time":
        devices = sorted({r.device for r in at_scale if r.device})
        if devices:
            title += f" — {'; '.join(devices)}"
    fig.suptitle(title, fontsize=13)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()  # lay out first, so that label sizes are final
    for texts in point_labels:
        declutter(texts)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the command -----------------------------------------------------------------------------


def write_report(
    dirs: Sequence[str | Path],
    out: str | Path | None = None,
    published: Sequence[PublishedResult] | None = None,
    crops: Sequence[str] = (),
    regions: Sequence[Region] = (),
    crop_width: float = PAPER_WIDTH_IN,
) -> list[Path]:
    """Find the runs under ``dirs`` and write report.md, the figures and report.html (with
    ``crops``: the zoomed-crop figures of those images); returns the files."""
    runs = find_runs(dirs)
    published = load_published() if published is None else list(published)
    out = Path(out) if out is not None else Path(dirs[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    figures = []
    # first, so that a bad --crops name or region stops the report before the other figures
    crop_files = write_crop_figures(runs, crops, regions, out, crop_width) if crops else []
    for scale, setting in settings(runs):
        # BD / DN runs beside the papers' BD / DN numbers only (files named _bd, _dn)
        group = [r for r in runs if r.degradation == setting]
        rows = [p for p in published if p.degradation == setting]
        tag = f"x{scale}" if setting == "bicubic" else f"x{scale}_{setting}"
        for x in ("params", "time"):
            has_x = any(
                (r.params if x == "params" else r.ms_per_image) for r in group if r.scale == scale
            )
            if has_x or x == "params":
                figures.append(plot_scale(group, rows, scale, x, out / f"psnr_vs_{x}_{tag}.png"))
        if any(has_lpips(r) for r in group if r.scale == scale):
            path = out / f"perception_distortion_{tag}.png"
            figures.append(plot_perception_distortion(group, rows, scale, path))
    table = markdown_table(runs, published)
    table += "\n" + "\n".join(f"![{f.stem}]({f.name})" for f in figures) + "\n"
    table += crops_markdown(crop_files)
    md = out / "report.md"
    md.write_text(table, encoding="utf-8")
    page = write_html(runs, table, out)
    written += [md, *figures, *crop_files, page]
    return written


def crops_markdown(files: Sequence[Path]) -> str:
    pngs = [f for f in files if f.suffix == ".png"]
    if not pngs:
        return ""
    lines = ["", "## Zoomed crops", ""]
    lines += [f"![{f.stem}]({f.name}) ([PDF]({f.with_suffix('.pdf').name}))" for f in pngs]
    return "\n".join(lines) + "\n"


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: name a test image, e.g. Set14/baboon")
    return names


def _region_arg(text: str) -> Region:
    try:
        return parse_region(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _inches(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1.0 <= value <= 20.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give the width in inches, 1 to 20")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sr-report",
        description="Gather sr-eval runs (results.json under DIR, recursively) into a "
        "markdown table, PSNR-vs-parameters / PSNR-vs-time figures, zoomed-crop figures "
        "(--crops) and report.html, a page to compare the runs' images side by side.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run or sweep directories")
    parser.add_argument("-o", "--out", help="output folder (default: <first DIR>/report)")
    parser.add_argument(
        "--published",
        metavar="CSV",
        help="reference numbers (columns method,set,scale,psnr,ssim,params,source) instead of the built-in table",
    )
    parser.add_argument("--no-published", action="store_true", help="leave the papers' numbers out")
    parser.add_argument(
        "--crops",
        action="extend",
        type=_names,
        default=[],
        metavar="SET/IMAGE[,...]",
        help="zoomed-crop figures of these test images (e.g. Set14/baboon; several: "
        "comma-separated or --crops again), from the runs' saved images (sr-eval "
        "save_images=true)",
    )
    parser.add_argument(
        "--crop-region",
        action="append",
        type=_region_arg,
        default=[],
        metavar="X,Y,W,H",
        help="the crop in HR pixels: once for every --crops image, or once per image in "
        "order (default: where the runs differ most)",
    )
    parser.add_argument(
        "--crop-width",
        type=_inches,
        default=PAPER_WIDTH_IN,
        metavar="INCHES",
        help=f"crop figure width (default {PAPER_WIDTH_IN}: a two-column paper's text width; "
        "3.3 for one column)",
    )
    args = parser.parse_args(argv)
    if args.crop_region and not args.crops:
        parser.error("--crop-region needs --crops SET/IMAGE")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        published = [] if args.no_published else load_published(args.published)
        files = write_report(
            args.dirs, args.out, published, args.crops, args.crop_region, args.crop_width
        )
    except Exception as err:
        if show_tracebacks() or not is_user_error(err):
            raise
        print_user_error("sr-report", err, hint="SR_DEBUG=1")
        return EXIT_USER_ERROR
    print(files[0].read_text(encoding="utf-8"))
    for f in files:
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
