"""sr-report's HTML page: ``report.html`` beside ``report.md``, in one self-contained folder.

The page holds the report's tables and figures, and per test image a viewer that shows any
two of HR, bicubic and the runs side by side or under a before/after slider, with one zoom
and pan for both (``report_assets/viewer.js``; plain HTML, CSS and JS, no library). Every
image the page shows is copied next to it (``html_images/``), so the folder can be moved,
zipped or opened from the file system; the page makes no network request.

Viewers are made for the images some run saved (``sr-eval save_images=true`` or an
``outputs=`` run); the HR is the set's, cut to a multiple of the scale so that it lines up
with the SR images.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from sr_lightning.apps.report_common import Run, colour, ordered_sets, run_labels
from sr_lightning.apps.report_crops import score_text
from sr_lightning.apps.report_images import per_image, read_hr, saved_image

ASSETS = ("viewer.js", "viewer.css")
IMAGES = "html_images"

# -- the report's markdown, as HTML ----------------------------------------------------------

_INLINE = (
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"\*([^*]+)\*"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r'<a href="\2">\1</a>'),
)
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)(.*)$")


def inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, replacement in _INLINE:
        out = pattern.sub(replacement, out)
    return out


def _table(rows: list[str]) -> str:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    head, body = cells[0], cells[2:]
    numeric = re.compile(r"^[-–]?[\d.]+( [kM])?$")
    out = ["<table>", "<thead><tr>", *(f"<th>{inline(c)}</th>" for c in head), "</tr></thead>"]
    out.append("<tbody>")
    for row in body:
        tds = "".join(
            f'<td class="num">{inline(c)}</td>' if numeric.match(c) else f"<td>{inline(c)}</td>"
            for c in row
        )
        out.append(f"<tr>{tds}</tr>")
    return "\n".join([*out, "</tbody></table>"])


def markdown_to_html(markdown: str) -> str:
    """The markdown sr-report writes (headings, paragraphs, tables, figures) as HTML."""
    blocks: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            blocks.append(_table(lines[i:j]))
            i = j
            continue
        if m := re.match(r"^(#{1,4}) (.*)$", line):
            level = len(m.group(1))
            blocks.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
        elif m := _IMAGE.match(line):
            alt, src, rest = m.groups()
            blocks.append(
                f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}">'
                f"<figcaption>{inline(alt)}{inline(rest)}</figcaption></figure>"
            )
        elif line.strip():
            blocks.append(f"<p>{inline(line)}</p>")
        i += 1
    return "\n".join(blocks)


# -- the viewers' images ---------------------------------------------------------------------


def _place(src: Path, dest: Path) -> None:
    """A hard link when the file system allows one (no copy of the bytes), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _write_png(image: Any, dest: Path) -> None:
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(dest)


def viewer_specs(runs: Sequence[Run], out: Path) -> list[dict[str, Any]]:
    """One viewer per (scale, LR setting, set, image) that a run saved; the images are placed
    under ``out/html_images/`` and the specs name them relative to ``out``."""
    keys: dict[int, str] = {}
    for r in runs:
        keys[id(r)] = f"{len(keys):02d}_{_slug(r.label)}"
    specs = []
    for scale, setting in sorted({(r.scale, r.degradation) for r in runs}):
        group = [r for r in runs if (r.scale, r.degradation) == (scale, setting)]
        labels = run_labels(group)
        tag = f"x{scale}" + ("" if setting == "bicubic" else f"_{setting}")
        saved = {key for r in group for key in per_image(r) if saved_image(r, *key) is not None}
        order = {s: i for i, s in enumerate(ordered_sets(s for s, _ in saved))}
        for set_name, image in sorted(saved, key=lambda k: (order[k[0]], k[1])):
            hr = read_hr(group, set_name, image, scale)
            hr_file = Path(IMAGES, f"hr_{tag}", set_name, f"{image}.png")
            _write_png(hr, out / hr_file)
            sources = [
                {"label": "HR", "colour": "#000000", "src": hr_file.as_posix(), "scores": ""}
            ]
            for r in sorted(group, key=lambda r: not r.is_bicubic):
                path = saved_image(r, set_name, image)
                if path is None:
                    continue
                dest = Path(IMAGES, keys[id(r)], set_name, f"{image}.png")
                _place(path, out / dest)
                scores = per_image(r).get((set_name, image), {})
                sources.append(
                    {
                        "label": labels[id(r)],
                        "colour": colour(r.method),
                        "src": dest.as_posix(),
                        "scores": score_text(scores) if scores else "",
                    }
                )
            specs.append(
                {
                    "title": f"{set_name}/{image} ×{scale}"
                    + ("" if setting == "bicubic" else f" {setting.upper()}"),
                    "width": int(hr.shape[2]),
                    "height": int(hr.shape[1]),
                    "sources": sources,
                }
            )
    return specs


# -- the page --------------------------------------------------------------------------------


def _viewers_html(specs: Sequence[dict[str, Any]]) -> str:
    if not specs:
        return (
            "<p>No run saved its images: run <code>sr-eval … save_images=true</code> to "
            "compare them here image by image.</p>"
        )
    parts = [
        "<p>Pick any two images (A, B): <em>slider</em> shows A left of the line and B right "
        "of it; drag the line or the range below. Scroll to zoom, drag to pan (both images "
        "move together), double-click to fit.</p>"
    ]
    for i, spec in enumerate(specs):
        scores = "; ".join(
            f"{html.escape(s['label'])} {html.escape(s['scores'])}"
            for s in spec["sources"][1:]
            if s["scores"]
        )
        parts.append(
            f'<details class="sr-image" data-viewer="{i}"{" open" if i == 0 else ""}>'
            f"<summary>{html.escape(spec['title'])}"
            f'<span class="sr-summary-scores">{scores}</span></summary>'
            '<div class="sr-viewer"></div></details>'
        )
    return "\n".join(parts)


def page(markdown: str, specs: Sequence[dict[str, Any]]) -> str:
    data = json.dumps(specs).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation report</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/viewer.css">
</head>
<body>
{markdown_to_html(markdown)}
<h2>Image by image</h2>
{_viewers_html(specs)}
<script type="application/json" id="sr-viewers">{data}</script>
<script src="assets/viewer.js"></script>
</body>
</html>
"""


def write_html(runs: Sequence[Run], markdown: str, out: Path) -> Path:
    """``out/report.html`` with its assets and images; returns the page's path."""
    specs = viewer_specs(runs, out)
    assets = resources.files("sr_lightning.apps") / "report_assets"
    (out / "assets").mkdir(parents=True, exist_ok=True)
    for name in ASSETS:
        (out / "assets" / name).write_bytes((assets / name).read_bytes())
    path = out / "report.html"
    path.write_text(page(markdown, specs), encoding="utf-8")
    return path
