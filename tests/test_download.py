"""Downloads and archive extraction, against a local HTTP server only (no internet)."""

from __future__ import annotations

import hashlib
import io
import random
import re
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sr_lightning.common import download as common_dl
from sr_lightning.common.download import ChecksumError, DownloadError, RemoteFile, download_file
from sr_lightning.common.pretrained import BACKBONES
from sr_lightning.data import download as dl
from sr_lightning.data.download import (
    KNOWN_FILES,
    DatasetSpec,
    UnsafeArchiveError,
    extract_archive,
    fetch_dataset,
)

PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range`` unless the path is in ``no_range``;
    sends only ``drop_after[path]`` bytes (once) and then closes the connection."""

    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and self.path not in srv.no_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = srv.drop_after.pop(self.path, None)
        if cut is not None:
            self.close_connection = True
            body = body[:cut]
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.no_range: set[str] = set()
        self.drop_after: dict[str, int] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common_dl, "_RETRY_DELAY_S", 0.0)


def _leftovers(folder: Path) -> list[str]:
    """Files in ``folder``, ignoring the ``.lock`` kept after a failed download."""
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".lock")


# --------------------------------------------------------------------------- download


def test_good_download(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "sub" / "f.bin"
    out = download_file(server.url("/f.bin"), dest, PAYLOAD_SHA, len(PAYLOAD), progress=False)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]  # no .part / .lock
    assert server.requests == [("/f.bin", None)]


def test_wrong_sha256_raises_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    url = server.url("/f.bin")
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download_file(url, dest, wrong, progress=False)
    message = str(info.value)
    assert url in message and wrong in message and PAYLOAD_SHA in message
    assert "run again" in message.lower()
    assert _leftovers(tmp_path) == []


def test_wrong_size_raises_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match="bytes"):
        download_file(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_SHA, 123, progress=False)
    assert _leftovers(tmp_path) == []


def test_interrupted_then_resumed_on_next_call(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    server.drop_after["/f.bin"] = 100_000
    dest = tmp_path / "f.bin"
    part = tmp_path / "f.bin.part"
    url = server.url("/f.bin")
    with pytest.raises(DownloadError, match="resume"):
        download_file(url, dest, PAYLOAD_SHA, progress=False, retries=0)
    assert not dest.exists()
    assert part.read_bytes() == PAYLOAD[:100_000]

    download_file(url, dest, PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.requests == [("/f.bin", None), ("/f.bin", "bytes=100000-")]


def test_interruption_is_resumed_within_one_call(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    server.drop_after["/f.bin"] = 12_345
    dest = tmp_path / "f.bin"
    download_file(server.url("/f.bin"), dest, PAYLOAD_SHA, len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/f.bin", None), ("/f.bin", "bytes=12345-")]


def test_server_ignoring_range_restarts_from_zero(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    server.no_range.add("/f.bin")
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes that must not be kept")
    download_file(server.url("/f.bin"), dest, PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0][1] is not None  # it did ask to resume; got 200


def test_complete_part_is_verified_after_416(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    download_file(server.url("/f.bin"), dest, PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/f.bin", f"bytes={len(PAYLOAD)}-")]


def test_existing_good_file_is_not_downloaded_again(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    url = server.url("/f.bin")
    download_file(url, dest, PAYLOAD_SHA, len(PAYLOAD), progress=False)
    download_file(url, dest, PAYLOAD_SHA, len(PAYLOAD), progress=False)
    assert len(server.requests) == 1


def test_existing_bad_file_is_replaced(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"corrupt")
    download_file(server.url("/f.bin"), dest, PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_missing_checksum_is_refused_before_any_request(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    url = server.url("/f.bin")
    with pytest.raises(ValueError, match="sha256") as info:
        download_file(url, tmp_path / "f.bin", None, progress=False)
    assert "allow_unverified" in str(info.value)
    assert server.requests == []
    out = download_file(url, tmp_path / "f.bin", None, progress=False, allow_unverified=True)
    assert out.read_bytes() == PAYLOAD


def test_hash_prefix_like_torch_hub(server: _Server, tmp_path: Path) -> None:
    server.files["/f.bin"] = PAYLOAD
    url = server.url("/f.bin")
    download_file(url, tmp_path / "a.bin", PAYLOAD_SHA[:8], progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    bad_prefix = f"{(int(PAYLOAD_SHA[:8], 16) + 1) % 16**8:08x}"
    with pytest.raises(ChecksumError, match="prefix"):
        download_file(url, tmp_path / "b.bin", bad_prefix, progress=False)
    assert not (tmp_path / "b.bin").exists()
    with pytest.raises(ValueError, match="hex"):
        download_file(url, tmp_path / "c.bin", "abc", progress=False)


def test_http_error_names_url(server: _Server, tmp_path: Path) -> None:
    url = server.url("/missing.bin")
    with pytest.raises(DownloadError, match="404") as info:
        download_file(url, tmp_path / "m.bin", PAYLOAD_SHA, progress=False)
    assert url in str(info.value)
    assert _leftovers(tmp_path) == []


def test_waiting_process_finds_the_file_done_by_the_lock_holder(
    server: _Server, tmp_path: Path
) -> None:
    fcntl = pytest.importorskip("fcntl")
    server.files["/f.bin"] = PAYLOAD
    dest = tmp_path / "f.bin"
    result: list[Path] = []
    with open(tmp_path / "f.bin.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another "rank" is downloading
        worker = threading.Thread(
            target=lambda: result.append(
                download_file(server.url("/f.bin"), dest, PAYLOAD_SHA, progress=False)
            )
        )
        worker.start()
        time.sleep(0.2)  # let the worker block on the lock (the test holds either way)
        dest.write_bytes(PAYLOAD)  # ... and that rank finishes
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(10)
    assert result == [dest]
    assert server.requests == []


def test_cli_refuses_unverified_download(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="sha256"):
        dl.main(["DIV2K_valid_HR", "--data-dir", str(tmp_path)])
    assert not (tmp_path / "DIV2K_valid_HR").exists()


def test_registry_entries() -> None:
    tv = pytest.importorskip("torchvision.models")
    for arch, weights in (
        ("vgg19", tv.VGG19_Weights),
        ("vgg16", tv.VGG16_Weights),
        ("alexnet", tv.AlexNet_Weights),
    ):
        entry = BACKBONES[arch]
        assert entry.url == weights.IMAGENET1K_V1.url
        assert entry.url.endswith("/" + entry.filename)
        # torchvision's file names embed the first 8 hex digits of the sha256
        assert re.search(r"-([0-9a-f]{8})\.pth$", entry.url).group(1) == entry.sha256
    for name in ("DIV2K_train_HR", "DIV2K_valid_HR"):
        entry = KNOWN_FILES[name]
        assert entry.url == f"https://data.vision.ee.ethz.ch/cvl/DIV2K/{name}.zip"
        assert entry.filename == f"{name}.zip"


# --------------------------------------------------------------------------- extraction


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def _tar(path: Path, infos: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in infos:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _sym(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def test_good_zip_extracts(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"set/b.png": b"bb", "set/a.png": b"aa", "set/": b""})
    dest = tmp_path / "out"
    files = extract_archive(archive, dest)
    assert files == [dest / "set" / "a.png", dest / "set" / "b.png"]
    assert (dest / "set" / "a.png").read_bytes() == b"aa"
    assert _leftovers(tmp_path) == ["a.zip", "out"]  # no temp folder left


def test_good_tar_with_inner_symlink_extracts(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "a.tar.gz",
        [(tarfile.TarInfo("d/x.txt"), b"x"), (_sym("d/y.txt", "x.txt"), None)],
    )
    dest = tmp_path / "out"
    files = extract_archive(archive, dest)
    assert files == [dest / "d" / "x.txt"]
    assert (dest / "d" / "y.txt").read_bytes() == b"x"


@pytest.mark.parametrize("bad", ["../evil.txt", "ok/../../evil.txt", "ABS"])
def test_zip_slip_is_refused(tmp_path: Path, bad: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if bad == "ABS":
        bad = str(tmp_path / "evil.txt")
    archive = _zip(work / "a.zip", {"fine.txt": b"ok", bad: b"pwned"})
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, work / "out")
    assert bad in str(info.value)
    assert not (tmp_path / "evil.txt").exists()
    assert _leftovers(work) == ["a.zip"]  # nothing extracted, no temp folder
    assert _leftovers(tmp_path) == ["work"]


@pytest.mark.parametrize(
    ("infos", "named"),
    [
        ([(tarfile.TarInfo("../evil.txt"), b"pwned")], "../evil.txt"),
        ([(tarfile.TarInfo("/abs/evil.txt"), b"pwned")], "/abs/evil.txt"),
        ([(_sym("link", "../.."), None), (tarfile.TarInfo("link/evil.txt"), b"p")], "link"),
        ([(_sym("link", "/etc"), None)], "link"),
        ([(_sym("here", "."), None), (_sym("here/up", ".."), None)], "here/up"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-absolute", "through-symlink"],
)
def test_tar_slip_is_refused(tmp_path: Path, infos: list, named: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar(work / "a.tar.gz", [(tarfile.TarInfo("fine.txt"), b"ok"), *infos])
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, work / "out")
    assert repr(named) in str(info.value)
    assert _leftovers(work) == ["a.tar.gz"]
    assert _leftovers(tmp_path) == ["work"]


def test_tar_device_and_outside_hardlink_are_refused(tmp_path: Path) -> None:
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    archive = _tar(tmp_path / "dev.tar.gz", [(dev, None)])
    with pytest.raises(UnsafeArchiveError, match=r"'dev'.*special"):
        extract_archive(archive, tmp_path / "out1")
    hard = tarfile.TarInfo("hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "../secret"
    archive = _tar(tmp_path / "hard.tar.gz", [(hard, None)])
    with pytest.raises(UnsafeArchiveError, match="'hard'"):
        extract_archive(archive, tmp_path / "out2")
    assert _leftovers(tmp_path) == ["dev.tar.gz", "hard.tar.gz"]


def test_extract_refuses_non_empty_destination(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"a.txt": b"a"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_bytes(b"k")
    with pytest.raises(FileExistsError, match="out"):
        extract_archive(archive, tmp_path / "out")
    assert _leftovers(tmp_path / "out") == ["keep.txt"]


# --------------------------------------------------------------------------- datasets


def test_fetch_dataset_installs_layout_once(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(1, 4):
            zf.writestr(f"DIV2K_train_HR/{i:04d}.png", f"img{i}".encode())
    server.files["/DIV2K_train_HR.zip"] = buf.getvalue()
    remote = RemoteFile(
        url=server.url("/DIV2K_train_HR.zip"),
        filename="DIV2K_train_HR.zip",
        sha256=hashlib.sha256(buf.getvalue()).hexdigest(),
    )
    monkeypatch.setitem(dl.DATASETS, "DIV2K_train_HR", DatasetSpec(remote, num_images=3))

    out = fetch_dataset("DIV2K_train_HR", tmp_path, progress=False)
    assert out == tmp_path / "DIV2K_train_HR"
    assert sorted(p.name for p in out.iterdir()) == ["0001.png", "0002.png", "0003.png"]
    assert (out / "0002.png").read_bytes() == b"img2"
    assert _leftovers(tmp_path) == ["DIV2K_train_HR", "downloads"]
    assert _leftovers(tmp_path / "downloads") == []  # archive removed after extraction
    fetch_dataset("DIV2K_train_HR", tmp_path, progress=False)
    assert len(server.requests) == 1


def test_fetch_dataset_without_checksum_needs_opt_in(tmp_path: Path) -> None:
    # DIV2K has no published checksum: refused before any network access.
    with pytest.raises(ValueError, match="sha256"):
        fetch_dataset("DIV2K_valid_HR", tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch_dataset("nope", tmp_path)
