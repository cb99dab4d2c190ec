"""sr-report's report.html (issue 30): a self-contained folder, opened from the file system in
headless Chromium, whose viewer's slider changes the image in the viewport, with synchronised
zoom side by side, no console error and no network request.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it). Without it the browser
test is skipped on a workstation but fails under CI (``CI`` set), so that it never skips
silently there.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_lightning.apps.report import main
from tests.helpers.browser import BrowserUnavailable, Chromium, find_chromium
from tests.helpers.report_runs import fake_eval_run

SET = "Tiny"
W, H = 96, 64


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """report.html of a bicubic and an ESPCN run whose images differ plainly from the HR: a
    grey ramp HR, a dark 'bicubic', a bright stripey 'ESPCN'. The folder is then moved, so
    that nothing can refer back to the runs."""
    ramp = np.tile(np.linspace(40, 220, W, dtype=np.uint8)[None, :, None], (H, 1, 3))
    hr_dir = tmp_path / "data" / SET
    hr_dir.mkdir(parents=True)
    Image.fromarray(ramp).save(hr_dir / "img_000.png")
    dark = np.full((H, W, 3), 20, np.uint8)
    bright = np.full((H, W, 3), 235, np.uint8)
    bright[::4] = (200, 30, 30)
    runs = tmp_path / "runs"
    fake_eval_run(
        runs / "b", "bicubic", 2, SET, hr_dir, {"img_000": dark}, {"img_000": (20.5, 0.5)}
    )
    fake_eval_run(runs / "e", "espcn", 2, SET, hr_dir, {"img_000": bright}, {"img_000": (21, 0.6)})
    assert main([str(runs), "-o", str(tmp_path / "made"), "--crops", f"{SET}/img_000"]) == 0
    moved = tmp_path / "moved" / "report"
    shutil.copytree(tmp_path / "made", moved)
    shutil.rmtree(tmp_path / "made")
    shutil.rmtree(runs)
    shutil.rmtree(tmp_path / "data")
    return moved


def test_the_page_is_one_folder_without_network(report):
    page = (report / "report.html").read_text()
    assert "Evaluation report" in page and "<table>" in page
    for url in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert not re.match(r"^[a-z]+://", url) and not url.startswith("/"), url
        assert url.startswith("data:") or (report / url).is_file(), url
    for name in ("report.html", "assets/viewer.js", "assets/viewer.css"):
        assert not re.search(r"https?://|//cdn", (report / name).read_text()), name
    for image in ("hr_x2", "00_b", "01_e"):
        assert (report / "html_images" / image / SET / "img_000.png").is_file()
    # the HR shown is the set's, cut to the scale (96x64 at x2 stays)
    assert Image.open(report / "html_images" / "hr_x2" / SET / "img_000.png").size == (W, H)


@pytest.fixture
def browser(tmp_path: Path):
    try:
        find_chromium()
    except BrowserUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {err}")
        pytest.skip(str(err))
    with Chromium(tmp_path / "profile", width=1280, height=900) as chrome:
        for domain in ("Page", "Runtime", "Network", "Log"):
            chrome.call(f"{domain}.enable")
        yield chrome


def _box(chrome: Chromium, selector: str, page: bool = False) -> dict[str, float]:
    """The element's box in the viewport (mouse events), or in the page (``page``: the
    screenshot's clip)."""
    scroll = "window.scrollX, window.scrollY" if page else "0, 0"
    return chrome.evaluate(
        f"((dx, dy) => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
        f" return {{x: r.left + dx, y: r.top + dy, width: r.width, height: r.height}}; }})({scroll})"
    )


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def test_the_viewer_in_headless_chromium(report, browser):
    mark = len(browser.events)
    browser.call("Page.navigate", {"url": (report / "report.html").as_uri()})
    browser.wait_for("Page.loadEventFired", mark)
    browser.evaluate(
        "Promise.all([...document.querySelectorAll('.sr-viewer img')]"
        ".filter(i => i.src).map(i => i.decode()))"
    )
    browser.evaluate("document.querySelector('.sr-viewer').scrollIntoView()")
    port = _box(browser, ".sr-viewport[data-mode=slider]", page=True)
    before = _pixels(browser.screenshot(port))

    # drag the range's thumb from the middle to 90 %: B (right of the line) gives way to A
    track = _box(browser, ".sr-split")
    y = track["y"] + track["height"] / 2
    browser.mouse("mousePressed", track["x"] + track["width"] / 2, y)
    for f in (0.6, 0.75, 0.9):
        browser.mouse("mouseMoved", track["x"] + f * track["width"], y, button="left")
    browser.mouse("mouseReleased", track["x"] + 0.9 * track["width"], y)
    split = browser.evaluate("document.querySelector('.sr-viewer').viewer.split")
    assert 0.85 < split < 0.95, split
    after = _pixels(browser.screenshot(port))
    assert before.shape == after.shape == (round(port["height"]), round(port["width"]), 3)
    w = before.shape[1]
    changed = np.abs(after - before)[:, round(0.55 * w) : round(0.85 * w)].mean()
    kept = np.abs(after - before)[:, : round(0.45 * w)].mean()
    assert changed > 20 and kept < 1, (changed, kept)

    # side by side: one wheel zooms both images alike
    browser.evaluate("document.querySelector('.sr-modes button[data-mode=side]').click()")
    left = _box(browser, ".sr-side-box .sr-viewport")
    fitted = browser.evaluate("document.querySelector('.sr-viewer').viewer.view.zoom")
    browser.mouse(
        "mouseWheel",
        left["x"] + left["width"] / 3,
        left["y"] + left["height"] / 2,
        deltaX=0,
        deltaY=-300,
    )
    transforms = browser.evaluate(
        "[...document.querySelectorAll('.sr-side-box img')].map(i => i.style.transform)"
    )
    zoom = browser.evaluate("document.querySelector('.sr-viewer').viewer.view.zoom")
    assert len(transforms) == 2 and transforms[0] == transforms[1], transforms
    shown_zoom = float(re.search(r"scale\(([\d.]+)\)", transforms[0])[1])
    assert shown_zoom == pytest.approx(zoom, rel=1e-4)
    assert zoom == pytest.approx(2 * fitted, rel=1e-6)  # 300 px of wheel: twice the fit

    shot = _pixels(browser.screenshot())
    assert shot.shape == (900, 1280, 3)
    assert shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50

    methods = [e.get("method") for e in browser.events]
    errors = [
        e["params"]
        for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (
            e.get("method") == "Runtime.consoleAPICalled"
            and e["params"]["type"] in ("error", "assert")
        )
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert not errors, errors
    urls = [
        e["params"]["request"]["url"]
        for e in browser.events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert "Page.loadEventFired" in methods and any("html_images" in u for u in urls), urls
    assert all(u.startswith(("file://", "data:")) for u in urls), urls
