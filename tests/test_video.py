"""Video in sr-upscale: frames, timestamps, audio, colour and bit depth survive; nothing is
half-written. Each test builds its own few-frame clips with PyAV."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

import sr_lightning.apps.upscale as upscale
import sr_lightning.data.video as video_io
from sr_lightning.core.inference import Generator, Upscaler
from sr_lightning.core.video import VideoOptions, upscale_video
from sr_lightning.data.video import EncodeOptions, VideoError, probe_video
from sr_lightning.nets.espcn import ESPCN
from tests.helpers.compose import compose_app
from tests.helpers.video import fill, frame_planes, make_clip

REPO = Path(__file__).resolve().parents[1]


# -- clips --------------------------------------------------------------------------------


def decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return [
            (f.pts * f.time_base, video_io.read_planes(f), f.format.name) for f in c.decode(video=0)
        ]


def audio_packets(path: Path) -> list[tuple[Fraction, bytes]]:
    with av.open(str(path)) as c:
        return [
            (p.pts * p.time_base, bytes(p))
            for p in c.demux(c.streams.audio[0])
            if p.size and p.pts is not None
        ]


def espcn(scale: int = 2) -> Generator:
    torch.manual_seed(0)
    return Generator(ESPCN(scale, 1, widths=(16, 8), activation="relu"), scale, 1)


def run_core(src: Path, out: Path, gen: Generator, **encode) -> None:
    up = Upscaler(gen, tile=0)
    options = VideoOptions(encode=EncodeOptions(**encode), batch_size=3, precision="fp32")
    upscale_video(up, probe_video(src), out, options)


# -- what is kept -------------------------------------------------------------------------


def test_frames_timestamps_and_audio_packets_are_kept(tmp_path):
    src = make_clip(tmp_path / "clip.mp4", frames=8, audio=True)
    out = tmp_path / "clip_x2.mp4"
    run_core(src, out, espcn(), codec="libx264", preset="ultrafast")
    before, after = decoded(src), decoded(out)
    assert len(after) == len(before) == 8
    assert [t for t, _, _ in after] == [t for t, _, _ in before]
    assert after[0][1][0].shape == (64, 96)
    src_audio, out_audio = audio_packets(src), audio_packets(out)
    assert len(src_audio) > 3
    assert out_audio == src_audio  # same timestamps, bytes equal packet for packet
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"


def test_variable_frame_rate_keeps_every_timestamp(tmp_path):
    pts = [0, 40, 50, 130, 140, 400, 410]  # ms: bursts and a long hold
    src = make_clip(tmp_path / "vfr.mkv", pts=pts)
    out = tmp_path / "vfr_x2.mkv"
    run_core(src, out, espcn(), codec="libx264", preset="ultrafast")
    stamps = [t for t, _, _ in decoded(out)]
    assert stamps == [Fraction(p, 1000) for p in pts]


def test_ffv1_luma_equals_the_image_path_on_the_decoded_frame(tmp_path):
    """Lossless output: Y of frame k is what Upscaler.upscale gives the decoded Y plane as a
    grey image (the image path's luma-model function). Both run the same float net; a batch
    of 3 frames against one image may round a value that lands on .5 differently, so at most
    one level on a handful of pixels."""
    src = make_clip(tmp_path / "clip.mp4", frames=5)
    out = tmp_path / "clip_x2.mkv"
    gen = espcn()
    run_core(src, out, gen, codec="ffv1")
    image_path = Upscaler(gen, tile=0)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"
    for (_, lr, _), (_, sr, fmt) in zip(decoded(src), decoded(out), strict=True):
        assert fmt == "yuv420p"
        expected = image_path.upscale(lr[0])
        diff = np.abs(sr[0].astype(int) - expected.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


class Nearest(nn.Module):
    """A "net" with a known output: nearest-neighbour upsampling by 2."""

    upsampling = "post"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")


@pytest.mark.parametrize(
    ("codec", "ext", "tolerance"), [("ffv1", ".mkv", 0), ("libx264", ".mp4", 8)]
)
def test_ten_bit_in_gives_ten_bit_out(tmp_path, codec, ext, tolerance):
    """With a known net (nearest x2), every 10-bit level comes through: exactly with the
    lossless ffv1, within 8 of 1023 (two 8-bit levels) with x264 at crf=0, which is
    near-lossless at 10 bits."""
    src = make_clip(tmp_path / "deep.mp4", frames=4, pix_fmt="yuv420p10le")
    out = tmp_path / f"deep_x2{ext}"
    options = {"preset": "ultrafast", "crf": 0} if codec == "libx264" else {}
    run_core(src, out, Generator(Nearest(), 2, 1), codec=codec, **options)
    frames = decoded(out)
    assert {fmt for _, _, fmt in frames} == {"yuv420p10le"}
    for (_, lr, _), (_, sr, _) in zip(decoded(src), frames, strict=True):
        y = sr[0]
        assert y.dtype == np.uint16 and (y % 4 != 0).mean() > 0.5  # not 8 bits shifted
        expected = lr[0].repeat(2, 0).repeat(2, 1).astype(int)
        assert np.abs(y.astype(int) - expected).max() <= tolerance


@pytest.fixture
def three_threads():
    """torch with 3 intra-op threads: the pipeline runs 3 net workers side by side."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


def threads_a_new_thread_sees() -> int:
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_net_workers_keep_the_frame_order(tmp_path, three_threads):
    """11 frames in batches of 2 through 3 workers (the last batch short), lossless out: frame
    k is frame k's Y upsampled, and the threads are torch's again afterwards."""
    src = make_clip(tmp_path / "order.mkv", frames=11, codec="ffv1")
    out = tmp_path / "order_x2.mkv"
    up = Upscaler(Generator(Nearest(), 2, 1), tile=0)
    options = VideoOptions(encode=EncodeOptions("ffv1"), batch_size=2, precision="fp32")
    upscale_video(up, probe_video(src), out, options)
    before, after = decoded(src), decoded(out)
    assert len(after) == 11
    for (_, lr, _), (_, sr, _) in zip(before, after, strict=True):
        np.testing.assert_array_equal(sr[0], lr[0].repeat(2, 0).repeat(2, 1))
    assert torch.get_num_threads() == 3 and threads_a_new_thread_sees() == 3


class FailsOnThirdCall(Nearest):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call == 3:
            raise RuntimeError("the net failed")
        return super().forward(x)


def test_a_net_worker_failure_stops_the_run(tmp_path, three_threads):
    src = make_clip(tmp_path / "a.mp4", frames=12)
    up = Upscaler(Generator(FailsOnThirdCall(), 2, 1), tile=0)
    options = VideoOptions(encode=EncodeOptions("libx264", preset="ultrafast"), batch_size=2,
                           precision="fp32")  # fmt: skip
    with pytest.raises(RuntimeError, match="the net failed"):
        upscale_video(up, probe_video(src), tmp_path / "a_x2.mp4", options)
    assert torch.get_num_threads() == 3 and threads_a_new_thread_sees() == 3


def test_rotation_and_colour_metadata_are_kept(tmp_path):
    src = tmp_path / "rot.mp4"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 48, 32, "yuv420p"
        cc = vs.codec_context
        cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 9, 1, 9, 14
        vs.set_display_rotation(90)
        for i in range(3):
            frame = av.VideoFrame(48, 32, "yuv420p")
            fill(frame, frame_planes(i, 48, 32))
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    out_path = tmp_path / "rot_x2.mp4"
    run_core(src, out_path, espcn(), codec="libx264", preset="ultrafast")
    info = probe_video(out_path)
    assert (info.colorspace, info.color_range, info.color_primaries, info.color_trc) == (
        9,
        1,
        9,
        14,
    )
    assert info.rotation == 90.0


class Recorder(Nearest):
    """An RGB "net" that keeps its input and upsamples it by nearest neighbour."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().float().clone())
        return super().forward(x)


@pytest.mark.parametrize(
    ("colorspace", "ycbcr"),
    # pure red (R'G'B' = 1, 0, 0) in 8-bit limited range: the standards' own numbers
    [(1, (63, 102, 240)), (6, (81, 90, 240))],  # BT.709, BT.601
)
def test_rgb_models_see_rgb_through_the_declared_matrix(tmp_path, colorspace, ycbcr):
    w, h = 32, 16

    def flat(i: int) -> list[np.ndarray]:
        y, u, v = ycbcr
        return [np.full((h, w), y, np.uint8), np.full((h // 2, w // 2), u, np.uint8),
                np.full((h // 2, w // 2), v, np.uint8)]  # fmt: skip

    src = make_clip(tmp_path / "red.mkv", frames=2, size=(w, h), colorspace=colorspace,
                    planes=flat)  # fmt: skip
    net = Recorder()
    out = tmp_path / "red_x2.mkv"
    run_core(src, out, Generator(net, 2, 3), codec="ffv1")
    rgb = net.seen[-1][0].mean(dim=(1, 2))
    assert torch.allclose(rgb, torch.tensor([1.0, 0.0, 0.0]), atol=0.02)
    _, planes, _ = decoded(out)[0]
    for plane, value in zip(planes, ycbcr, strict=True):
        assert np.abs(plane.astype(int) - value).max() <= 1  # and back with the same matrix


# -- errors and interruptions --------------------------------------------------------------


def compose_upscale(*overrides: str):
    return compose_app("upscale", "progress=false", *overrides)


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "espcn_x2.pth"
    torch.save(espcn().net.state_dict(), path)
    return path


def app_overrides(weights: Path) -> list[str]:
    return [f"weights={weights}", "model=espcn", "scale=2", "channels=1",
            "model.net.widths=[16,8]", "model.net.activation=relu"]  # fmt: skip


def test_a_folder_of_images_and_videos(tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=3, audio=True)
    make_clip(folder / "b.mov", frames=2)
    from PIL import Image

    Image.fromarray(frame_planes(0, 20, 12)[0]).save(folder / "c.png")
    cfg = compose_upscale(f"input={folder}", f"output={tmp_path / 'out'}", *app_overrides(weights))
    written = upscale.run(cfg)
    assert sorted(p.name for p in written) == ["a_x2.mp4", "b_x2.mov", "c_x2.png"]
    assert len(decoded(tmp_path / "out" / "a_x2.mp4")) == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written)
    with pytest.raises(FileExistsError, match="already exist"):
        upscale.run(cfg)  # an existing output is never overwritten


def test_output_names_the_video_file(tmp_path, weights):
    src = make_clip(tmp_path / "a.mp4", frames=3, audio=True)
    target = tmp_path / "out" / "upscaled.mp4"
    cfg = compose_upscale(f"input={src}", f"output={target}", *app_overrides(weights))
    assert upscale.run(cfg) == [target]
    assert [p.name for p in target.parent.iterdir()] == ["upscaled.mp4"]  # no hidden part left
    frames = decoded(target)
    assert len(frames) == 3 and frames[0][1][0].shape == (64, 96)
    assert audio_packets(target) == audio_packets(src)
    before = target.read_bytes()
    with pytest.raises(FileExistsError, match=r"upscaled\.mp4"):
        upscale.run(cfg)  # an existing file is never overwritten
    assert target.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "codec", "videos", "error", "match"),
    [
        ("out.mp4", "ffv1", 1, VideoError, r"out\.mp4.*cannot hold video\.codec=ffv1.*\.mkv"),
        ("out.avi", "libx264", 1, VideoError, r"out\.avi.*\.mkv"),
        ("out.mp4", "libx264", 2, ValueError, r"out\.mp4 names one video file.*2 video"),
    ],
)  # fmt: skip
def test_output_video_file_errors_before_anything_is_written(
    tmp_path, weights, name, codec, videos, error, match
):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=2)
    if videos == 2:
        make_clip(folder / "b.mkv", frames=2)
    source = folder if videos == 2 else folder / "a.mp4"
    cfg = compose_upscale(f"input={source}", f"output={tmp_path / 'out' / name}",
                          f"video.codec={codec}", *app_overrides(weights))  # fmt: skip
    with pytest.raises(error, match=match):
        upscale.run(cfg)
    assert not (tmp_path / "out").exists()


def test_unavailable_codec_names_the_ones_there_are(tmp_path, weights):
    make_clip(tmp_path / "a.mp4", frames=2)
    cfg = compose_upscale(f"input={tmp_path / 'a.mp4'}", f"output={tmp_path / 'out'}",
                          "video.codec=nosuchcodec", *app_overrides(weights))  # fmt: skip
    with pytest.raises(VideoError, match=r"nosuchcodec.*libx264.*ffv1"):
        upscale.run(cfg)
    assert not any((tmp_path / "out").glob("*"))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_video_is_one_clear_error_naming_it(tmp_path, weights, damage):
    good = make_clip(tmp_path / "good.mp4", frames=4).read_bytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(good[: len(good) // 2] if damage == "truncated" else os.urandom(4000))
    cfg = compose_upscale(f"input={bad}", f"output={tmp_path / 'out'}", *app_overrides(weights))
    with pytest.raises(VideoError, match=r"bad\.mp4"):
        upscale.run(cfg)
    assert not (tmp_path / "out" / "bad_x2.mp4").exists()


def test_a_failure_mid_video_leaves_nothing_and_a_rerun_completes(tmp_path, weights, monkeypatch):
    src = make_clip(tmp_path / "a.mp4", frames=6, audio=True)
    cfg = compose_upscale(f"input={src}", f"output={tmp_path / 'out'}", *app_overrides(weights))
    real_write = video_io.VideoWriter.write
    calls = []

    def write_then_die(self, planes, pts):
        calls.append(pts)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does mid-encode
        real_write(self, planes, pts)

    monkeypatch.setattr(video_io.VideoWriter, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        upscale.run(cfg)
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.setattr(video_io.VideoWriter, "write", real_write)
    assert [p.name for p in upscale.run(cfg)] == ["a_x2.mp4"]
    assert len(decoded(tmp_path / "out" / "a_x2.mp4")) == 6


@pytest.mark.slow  # a fresh interpreter importing torch and Hydra, killed, then a rerun: ~30 s
def test_a_killed_run_leaves_no_output_under_the_final_name(tmp_path, weights):
    frames = 600  # long enough that the run is still writing when it is killed
    src = make_clip(tmp_path / "long.mp4", frames=frames, size=(96, 64))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sr_lightning.apps.upscale", f"input={src}", f"output={out}",
           "video.batch_size=1", "progress=false", *app_overrides(weights)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        parts = list(out.glob(".*.part*")) if out.is_dir() else []
        if parts and parts[0].stat().st_size > 0:  # frames are being written
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "long_x2.mp4").exists()
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(decoded(out / "long_x2.mp4")) == frames
