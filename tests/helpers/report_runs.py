"""sr-eval run folders written by hand for sr-report's crop figure and page: results.json,
per_image.csv, run_info.json (with the set's HR folder) and the saved images, without a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_hr_set(folder: Path, size: tuple[int, int], count: int = 2, seed: int = 0) -> Path:
    """``count`` noisy RGB images ``img_000.png`` … of (w, h) ``size``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / f"img_{i:03d}.png"
        )
    return folder


def fake_eval_run(
    run: Path,
    method: str,
    scale: int,
    set_name: str,
    hr_dir: Path,
    images: dict[str, np.ndarray],
    scores: dict[str, tuple[float, float]],
    channels: int = 3,
) -> Path:
    """A run dir as ``sr-eval save_images=true`` leaves it, with the given SR images (uint8
    HxWx3) and per-image (PSNR, SSIM)."""
    (run / "images" / set_name).mkdir(parents=True)
    for name, image in images.items():
        Image.fromarray(image).save(run / "images" / set_name / f"{name}.png")
    rows = ["set,image,psnr_y,ssim_y"]
    rows += [f"{set_name},{name},{p!r},{s!r}" for name, (p, s) in scores.items()]
    (run / "per_image.csv").write_text("\n".join(rows) + "\n")
    mean = {
        "psnr_y": sum(p for p, _ in scores.values()) / len(scores),
        "ssim_y": sum(s for _, s in scores.values()) / len(scores),
        "images": len(scores),
    }
    (run / "results.json").write_text(json.dumps({set_name: mean}))
    info = {
        "method": method,
        "scale": scale,
        "channels": channels,
        "params": 0 if method == "bicubic" else 1000,
        "source": "bicubic" if method == "bicubic" else "checkpoint",
        "degradation": "bicubic",
        "ms_per_image": {set_name: 1.0},
        "hr_dirs": {set_name: str(hr_dir)},
    }
    (run / "run_info.json").write_text(json.dumps(info))
    return run
