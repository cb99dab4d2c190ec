"""Video files in and out with PyAV: decoded planes, exact timestamps, streams copied as is.

Nothing here knows about nets. :func:`probe_video` says what a file holds, :func:`read_frames`
yields its frames as planar YUV (or grey) numpy planes with their timestamps, and
:class:`VideoWriter` encodes such planes into a new file with the same timestamps, time
base, rotation and colour metadata as the input, and copies the input's audio and subtitle
streams packet for packet (a remux: their bytes are not touched).

Planes are ``uint8`` for 8-bit formats and ``uint16`` (the sample values, e.g. 0..1023) for
deeper ones. Formats that are not planar YUV / grey (``nv12``, RGB codecs, ...) are converted
by FFmpeg's swscale to the planar YUV format of their depth when decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".webm", ".avi"})

# video encoders worth naming when a requested one is missing (those the wheel has are listed)
KNOWN_ENCODERS = ("libx264", "libx265", "libsvtav1", "libaom-av1", "libvpx-vp9", "ffv1",
                  "prores_ks", "mpeg4")  # fmt: skip
# containers and the encoders they hold; another encoder makes the output a .mkv
_CONTAINER_CODECS = {
    ".mp4": {"libx264", "libx265", "libsvtav1", "libaom-av1", "libvpx-vp9", "mpeg4"},
    ".mov": {"libx264", "libx265", "libsvtav1", "libaom-av1", "prores_ks", "mpeg4"},
    ".webm": {"libsvtav1", "libaom-av1", "libvpx-vp9"},
    ".mkv": None,  # anything
}


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video stream holds, as decoded (planar format) and as declared (colour)."""

    path: Path
    width: int
    height: int
    pix_fmt: str  # the planar format frames are delivered in (yuv420p, yuv420p10le, gray, ...)
    bit_depth: int
    time_base: Fraction
    rate: Fraction | None  # the average frame rate, when known
    frames: int  # frames the container declares (0 when it does not say)
    colorspace: int  # AVColorSpace (1 BT.709, 5/6 BT.601, 9 BT.2020 NCL, 2 unspecified)
    color_range: int  # 1 limited (MPEG), 2 full (JPEG), 0 unspecified
    color_primaries: int
    color_trc: int
    rotation: float  # counter-clockwise degrees of the display matrix (0 when none)
    copy_streams: tuple[int, ...]  # audio and subtitle streams, copied packet for packet
    codec: str = ""  # the decoder's name (h264, hevc, mjpeg, ...): its default chroma siting
    source_pix_fmt: str = ""  # the format as decoded, before any conversion to planar

    @property
    def peak(self) -> int:
        return (1 << self.bit_depth) - 1

    @property
    def full_range(self) -> bool:
        return self.color_range == 2


def planar_format(name: str) -> str:
    """The planar YUV / grey format frames of ``name`` are read in (itself when planar)."""
    fmt = av.VideoFormat(name)
    if name.startswith("yuvj"):  # full-range aliases: same layout, range from the metadata
        return name.replace("yuvj", "yuv")
    deep = max(c.bits for c in fmt.components) > 8
    planar = fmt.is_planar if hasattr(fmt, "is_planar") else "p" in name
    if name.startswith("gray"):
        return name if name in ("gray", "gray10le", "gray12le", "gray16le") else "gray16le"
    alpha = "a" in name.split("p")[0][3:]
    if name.startswith("yuv") and planar and not alpha and (not deep or name.endswith("le")):
        return name
    return "yuv420p10le" if deep else "yuv420p"


def _depth(name: str) -> int:
    return max(c.bits for c in av.VideoFormat(name).components)


def probe_video(path: str | Path) -> VideoInfo:
    """Open ``path`` and decode its first frame; any failure is a ``VideoError`` naming it."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoError(f"{path}: no decodable video frame (truncated or corrupt?)")
            cc = stream.codec_context
            pix_fmt = planar_format(first.format.name)
            color_range = int(first.color_range or cc.color_range or 0)
            if first.format.name.startswith("yuvj"):
                color_range = 2
            copy = tuple(s.index for s in container.streams if s.type in ("audio", "subtitle"))
            return VideoInfo(
                path=path,
                width=first.width,
                height=first.height,
                pix_fmt=pix_fmt,
                bit_depth=_depth(pix_fmt),
                time_base=Fraction(stream.time_base),
                rate=Fraction(stream.average_rate) if stream.average_rate else None,
                frames=int(stream.frames or 0),
                colorspace=int(first.colorspace or cc.colorspace or 2),
                color_range=color_range,
                color_primaries=int(first.color_primaries or cc.color_primaries or 2),
                color_trc=int(first.color_trc or cc.color_trc or 2),
                rotation=float(first.rotation or 0.0),
                copy_streams=copy,
                codec=cc.name,
                source_pix_fmt=first.format.name,
            )
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoError(f"{path}: cannot read it as a video ({err})") from None


@dataclass
class Frame:
    """One decoded frame: its planes (Y[, U, V]) and its timestamp in the stream's time base."""

    planes: tuple[np.ndarray, ...]
    pts: int | None
    index: int


def read_planes(frame: av.VideoFrame) -> tuple[np.ndarray, ...]:
    """The planes of a planar frame as (h, w) arrays (copies, free of the frame's buffers)."""
    dtype = np.uint8 if _depth(frame.format.name) <= 8 else np.dtype("<u2")
    size = np.dtype(dtype).itemsize
    out = []
    for plane in frame.planes:
        buf = np.frombuffer(plane, dtype=dtype)
        out.append(buf.reshape(plane.height, plane.line_size // size)[:, : plane.width].copy())
    return tuple(out)


def read_frames(info: VideoInfo) -> Iterator[Frame]:
    """Every frame of the first video stream, in presentation order, as planes + pts."""
    path = info.path
    index = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if frame.format.name != info.pix_fmt or (frame.width, frame.height) != (
                    info.width,
                    info.height,
                ):
                    if (frame.width, frame.height) != (info.width, info.height):
                        raise VideoError(
                            f"{path}: frame {index} is {frame.width}x{frame.height}, the first "
                            f"was {info.width}x{info.height}; a size change mid-stream is "
                            "not supported"
                        )
                    frame = frame.reformat(format=info.pix_fmt)
                yield Frame(read_planes(frame), frame.pts, index)
                index += 1
    except VideoError:
        raise
    except (av.FFmpegError, OSError) as err:
        raise VideoError(f"{path}: decoding failed after {index} frame(s) ({err})") from None


def video_encoders() -> list[str]:
    """Video encoders of this PyAV build among the ones sr-upscale knows to be useful."""
    return [c for c in KNOWN_ENCODERS if c in av.codecs_available]


def check_encoder(codec: str, pix_fmt: str) -> str:
    """``pix_fmt`` if ``codec`` can encode it; else a clear error (or the nearest it can)."""
    try:
        enc = av.Codec(codec, "w")
    except (av.FFmpegError, ValueError):
        raise VideoError(
            f"video.codec={codec} is not in this PyAV build; it has: {', '.join(video_encoders())}"
        ) from None
    if enc.type != "video":
        raise VideoError(f"video.codec={codec} is not a video encoder")
    formats = [f.name for f in (enc.video_formats or [])]
    if formats and pix_fmt not in formats:
        raise VideoError(
            f"video.codec={codec} cannot encode pix_fmt {pix_fmt}; it takes "
            f"{', '.join(formats)} (set video.pix_fmt=...)"
        )
    return pix_fmt


def output_suffix(input_suffix: str, codec: str) -> str:
    """The input's container when it holds ``codec``, else ``.mkv`` (which holds anything)."""
    ext = input_suffix.lower()
    allowed = _CONTAINER_CODECS.get(ext, set())
    return ext if allowed is None or codec in allowed else ".mkv"


def check_container(path: Path, codec: str) -> None:
    """A clear error when the file ``path`` names cannot hold ``codec``'s video (by its
    extension: .mp4, .mov and .webm hold the codecs listed above, .mkv anything, and .avi,
    which cannot keep every frame's timestamp, is read but not written)."""
    ext = path.suffix.lower()
    if ext not in _CONTAINER_CODECS:
        writable = ", ".join(sorted(_CONTAINER_CODECS))
        raise VideoError(
            f"output={path}: sr-upscale writes {writable} videos, not {ext} (an {ext} file "
            "cannot keep every frame's timestamp); name the output .mkv or .mp4"
        )
    allowed = _CONTAINER_CODECS[ext]
    if allowed is not None and codec not in allowed:
        raise VideoError(
            f"output={path}: a {ext} file cannot hold video.codec={codec}; it holds "
            f"{', '.join(sorted(allowed))}. Name the output .mkv (which holds any codec) or "
            "choose one of those codecs"
        )


@dataclass(frozen=True)
class EncodeOptions:
    codec: str = "libx264"
    pix_fmt: str | None = None  # None: the input's
    crf: int | None = None
    preset: str | None = None
    threads: int = 0  # encoder threads (0: the codec's own choice)


class VideoWriter:
    """Encode planes into ``path`` with the input's timing and metadata; copy its other streams.

    Frames are given as planes of the output size with the input frame's pts (in the input
    video stream's time base, which the output stream keeps). The input's audio and
    subtitle packets are muxed as they are, each once the video has reached its time, so the
    file stays interleaved.
    """

    def __init__(
        self, path: Path, info: VideoInfo, width: int, height: int, options: EncodeOptions
    ) -> None:
        self.path = path
        self.info = info
        self.pix_fmt = check_encoder(options.codec, options.pix_fmt or info.pix_fmt)
        self._depth = _depth(self.pix_fmt)
        self._frames = 0
        self._input = av.open(str(info.path))
        self._out = av.open(str(path), "w")
        try:
            self._setup(width, height, options)
        except BaseException:
            self.abort()
            raise

    def _setup(self, width: int, height: int, options: EncodeOptions) -> None:
        info = self.info
        rate = info.rate or Fraction(25)
        vs = self._out.add_stream(options.codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, self.pix_fmt
        vs.time_base = info.time_base
        cc = vs.codec_context
        cc.time_base = info.time_base  # frames keep the input's pts exactly (VFR stays in sync)
        cc.colorspace = info.colorspace
        cc.color_range = info.color_range
        cc.color_primaries = info.color_primaries
        cc.color_trc = info.color_trc
        if options.threads:
            cc.thread_count = options.threads
        opts = {}
        if options.crf is not None:
            opts["crf"] = str(options.crf)
        if options.preset is not None:
            opts["preset"] = str(options.preset)
        vs.options = opts
        if info.rotation:
            vs.set_display_rotation(info.rotation)
        self._video = vs
        self._copies: dict[int, av.stream.Stream] = {}
        for index in info.copy_streams:
            src = self._input.streams[index]
            try:
                self._copies[index] = self._out.add_stream_from_template(src)
            except (av.FFmpegError, ValueError) as err:
                raise VideoError(
                    f"{self.path.name}: cannot copy {src.type} stream #{index} "
                    f"({src.codec_context.name}) of {info.path} into this container ({err}); "
                    "write a .mkv (which holds any stream)"
                ) from None
        streams = [self._input.streams[i] for i in info.copy_streams]
        self._packets = self._input.demux(streams) if streams else iter(())
        self._pending: av.Packet | None = None

    def write(self, planes: tuple[np.ndarray, ...], pts: int | None) -> None:
        """Encode one frame (planes of the output format, pts in the input's time base)."""
        frame = av.VideoFrame(self._video.width, self._video.height, self.pix_fmt)
        dtype = np.uint8 if self._depth <= 8 else np.dtype("<u2")
        size = np.dtype(dtype).itemsize
        for plane, data in zip(frame.planes, planes, strict=True):
            view = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
            if data.shape != (plane.height, plane.width):
                raise ValueError(
                    f"plane of shape {data.shape}, expected {(plane.height, plane.width)}"
                )
            view = view[:, : plane.line_size // size]
            view[:, : plane.width] = data
        frame.pts = pts
        frame.time_base = self.info.time_base
        frame.colorspace = self.info.colorspace
        frame.color_range = self.info.color_range
        self._mux_video(self._video.encode(frame))
        self._frames += 1

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._out.mux(packet)
            if packet.dts is not None:
                self._copy_until(packet.dts * packet.time_base)

    def _copy_until(self, time: Fraction | None) -> None:
        """Mux the copied streams' packets up to ``time`` seconds (all of them for None)."""
        while True:
            packet = self._pending
            if packet is None:
                packet = next(self._packets, None)
                if packet is None:
                    return
                if packet.size == 0 and packet.dts is None:  # the demuxer's flush packets
                    continue
            stamp = packet.dts if packet.dts is not None else packet.pts
            if time is not None and stamp is not None and stamp * packet.time_base > time:
                self._pending = packet
                return
            self._pending = None
            packet.stream = self._copies[packet.stream.index]
            self._out.mux(packet)

    def close(self) -> int:
        """Flush the encoder, copy the remaining packets, finish the file; returns frames."""
        self._mux_video(self._video.encode(None))
        self._copy_until(None)
        self._out.close()
        self._input.close()
        return self._frames

    def abort(self) -> None:
        """Close both files without finishing (the caller deletes the partial output)."""
        for container in (getattr(self, "_out", None), getattr(self, "_input", None)):
            if container is None:
                continue
            try:
                container.close()
            except Exception as err:
                log.debug("closing %s: %s", container, err)
