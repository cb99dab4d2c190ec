"""sr-upscale's video inputs: where each goes, the ``video:`` options, and running them.

Each input video becomes one output video (``<stem><suffix><ext>``; the input's container
when it holds the chosen codec, else ``.mkv``), or, for a single input video, the file
``output=`` names (``output=clip_x3.mp4``). Outputs are written to a hidden temporary file in
the output folder and renamed into place when complete. See ``docs/inference.md`` ("Video").
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from sr_lightning.core.inference import Upscaler
from sr_lightning.core.video import Progress, VideoOptions, upscale_video
from sr_lightning.data.video import (
    VIDEO_EXTENSIONS,
    EncodeOptions,
    VideoError,
    check_container,
    output_suffix,
    probe_video,
)
from sr_lightning.runtime.atomic import atomic_output

log = logging.getLogger("sr_lightning.apps.upscale")

__all__ = ["VIDEO_EXTENSIONS", "is_video", "names_a_video_file", "plan_videos", "upscale_videos",
           "video_file_job", "video_options"]  # fmt: skip

# libx264 / libx265 defaults when video.crf / video.preset are null. veryfast: 1080p x264
# encodes at ~18 frames/s on one core of the 2-core dev VM (medium ~11, ultrafast ~47), so the
# encoder keeps up with the net on the other core; crf 18 is near-transparent for x264.
_X26X_CRF = 18
_X26X_PRESET = "veryfast"


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def names_a_video_file(output: Path) -> bool:
    """``output=clip_x3.mp4``: a video file name (its extension says the container)."""
    return is_video(output) and not output.is_dir()


def video_file_job(
    images: list[Path], videos: list[Path], output: Path, codec: str, spec: str
) -> list[tuple[Path, Path]]:
    """The one (input, output) of ``output=<video file>``; an error unless the input is one
    video and the file's container holds ``codec``."""
    if images or len(videos) != 1:
        found = f"{len(videos)} video(s)" + (f" and {len(images)} image(s)" if images else "")
        raise ValueError(
            f"output={output} names one video file, but input={spec} has {found}; give a "
            "folder (output=<folder>) for several inputs or for images"
        )
    check_container(output, codec)
    return [(videos[0], output)]


def video_options(cfg: DictConfig) -> VideoOptions:
    """The ``video:`` keys of conf/upscale.yaml as ``VideoOptions``."""
    v = cfg.get("video") or {}
    codec = str(v.get("codec") or "libx264")
    crf = v.get("crf")
    preset = v.get("preset")
    if codec in ("libx264", "libx265"):
        crf = _X26X_CRF if crf is None else crf
        preset = _X26X_PRESET if preset is None else preset
    precision = str(v.get("precision") or "auto")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"video.precision={precision}: choose auto, fp32, bf16 or fp16")
    return VideoOptions(
        encode=EncodeOptions(
            codec=codec,
            pix_fmt=v.get("pix_fmt"),
            crf=None if crf is None else int(crf),
            preset=None if preset is None else str(preset),
            threads=int(v.get("threads") or 0),
        ),
        batch_size=int(v.get("batch_size") or 4),
        precision=precision,
        progress=bool(cfg.get("progress", True)),
    )


def plan_videos(
    files: list[Path], root: Path | None, output: Path, suffix: str, scale: int, codec: str
) -> list[tuple[Path, Path]]:
    """(input, output) of each video: ``output/<relative folder>/<stem><suffix><ext>``."""
    jobs = []
    for src in files:
        rel = src.relative_to(root).parent if root is not None else Path()
        name = f"{src.stem}{suffix.format(scale=scale)}{output_suffix(src.suffix, codec)}"
        jobs.append((src, output / rel / name))
    return jobs


def video_upscaler(upscaler: Upscaler, cfg: DictConfig) -> Upscaler:
    """The image ``Upscaler``'s model and tiling, with the video settings (channels_last)."""
    v = cfg.get("video") or {}
    channels_last = bool(cfg.get("channels_last")) or bool(v.get("channels_last", True))
    if channels_last == upscaler.channels_last:
        return upscaler
    return Upscaler(
        upscaler.generator,
        device=upscaler.device,
        channels_last=channels_last,
        tile=upscaler.tile,
        tile_overlap=upscaler.tile_overlap,
        batch_size=upscaler.batch_size,
        memory_fraction=upscaler.memory_fraction,
    )


def upscale_videos(
    upscaler: Upscaler, jobs: list[tuple[Path, Path]], cfg: DictConfig
) -> tuple[list[Path], list[Path]]:
    """Upscale each (input, output) video; returns (written, skipped as unreadable)."""
    options = video_options(cfg)
    up = video_upscaler(upscaler, cfg) if jobs else upscaler
    written, failed = [], []
    for source, target in jobs:
        try:
            info = probe_video(source)
        except VideoError as err:
            if not cfg.get("skip_bad"):
                raise
            log.warning("skipping %s", err)
            failed.append(source)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        progress = Progress(source.name, info.frames, options.progress)
        try:
            with atomic_output(target, bool(cfg.get("overwrite"))) as tmp:
                result = upscale_video(up, info, tmp, options, progress)
        finally:
            progress.close()
        rate = result.frames / result.seconds if result.seconds > 0 else 0.0
        print(
            f"{source.name}: {result.frames} frames -> {target} ({rate:.2f} frames/s, "
            f"{result.precision}, {options.encode.codec})"
        )
        written.append(target)
    return written, failed
