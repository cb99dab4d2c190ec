"""Safe downloads and archive extraction for datasets and pretrained weights.

Why not plain ``urlretrieve`` + ``extractall``: DIV2K's training zip is 3.5 GB, so
an interrupted transfer must resume rather than restart; a truncated or swapped
file must never be mistaken for a good one; and an archive must not be able to
write outside its destination. Hence:

* :func:`download_file` streams into ``<dest>.part``, resumes with an HTTP
  ``Range`` request, checks size and sha256 and only then renames into place.
* :func:`extract_archive` checks every member before writing anything, extracts
  into a temporary folder beside the destination and renames it into place, so
  a half-done extraction never looks complete.
* :func:`fetch_dataset` combines both for the datasets in :data:`DATASETS`.

Run ``python -m sr_lightning.data.download --help`` for the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from filelock import FileLock
from tqdm import tqdm

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_HEX = re.compile(r"[0-9a-f]{8,64}")
_USER_AGENT = "sr-lightning"
# Seconds to wait before resuming after an interruption (times the attempt number).
_RETRY_DELAY_S = 1.0


class DownloadError(RuntimeError):
    """A download could not be completed (network error, HTTP error, bad size)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected sha256."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination, or is a special file."""


class _Interrupted(Exception):
    """The body of a response ended early; the ``.part`` file can be resumed."""


@dataclass(frozen=True)
class RemoteFile:
    """A file we know how to fetch.

    ``sha256`` is the full hex digest, a hex prefix of at least 8 characters
    (weaker, see :func:`download_file`), or ``None`` when no checksum is known
    for certain, in which case the caller must supply one or opt out explicitly.
    """

    url: str
    filename: str
    sha256: str | None
    size: int | None = None


KNOWN_FILES: dict[str, RemoteFile] = {
    # The DIV2K site publishes no checksums; we store none rather than guess.
    # Pass the sha256 you trust to fetch_dataset/download_file, or
    # allow_unverified=True to skip the check.
    "DIV2K_train_HR": RemoteFile(
        url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        filename="DIV2K_train_HR.zip",
        sha256=None,
    ),
    "DIV2K_valid_HR": RemoteFile(
        url="https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
        filename="DIV2K_valid_HR.zip",
        sha256=None,
    ),
    # torchvision's VGG19_Weights.IMAGENET1K_V1. torchvision names hub files
    # "<name>-<first 8 hex of sha256>.pth" and torch.hub's check_hash=True checks
    # exactly that prefix; we do the same.
    "vgg19_imagenet1k_v1": RemoteFile(
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        filename="vgg19-dcbb9e9d.pth",
        sha256="dcbb9e9d",
    ),
    # LPIPS (AlexNet, VGG16) and DISTS (VGG16) backbones, named and hashed the same way
    "vgg16_imagenet1k_v1": RemoteFile(
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        filename="vgg16-397923af.pth",
        sha256="397923af",
    ),
    "alexnet_imagenet1k_v1": RemoteFile(
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        filename="alexnet-owt-7be5be79.pth",
        sha256="7be5be79",
    ),
}


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset that :func:`fetch_dataset` can install: its archive and image count."""

    file: RemoteFile
    num_images: int


DATASETS: dict[str, DatasetSpec] = {
    "DIV2K_train_HR": DatasetSpec(KNOWN_FILES["DIV2K_train_HR"], num_images=800),
    "DIV2K_valid_HR": DatasetSpec(KNOWN_FILES["DIV2K_valid_HR"], num_images=100),
}


# --------------------------------------------------------------------------- download


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise_hash(sha256: str | None, url: str, allow_unverified: bool) -> str | None:
    if sha256 is None:
        if allow_unverified:
            log.warning("downloading %s without checksum verification", url)
            return None
        raise ValueError(
            f"no sha256 is known for {url}: pass the expected sha256 "
            "(sha256='<64 hex digits>'), or pass allow_unverified=True to download "
            "it without verification"
        )
    value = sha256.strip().lower()
    if not _HEX.fullmatch(value):
        raise ValueError(
            f"sha256 for {url} must be 8 to 64 hex digits (a full digest or a prefix), got {sha256!r}"
        )
    return value


def _describe(expected: str) -> str:
    return expected if len(expected) == 64 else f"{expected}… (prefix)"


def download_file(
    url: str,
    dest: Path,
    sha256: str | None,
    size: int | None = None,
    *,
    progress: bool = True,
    timeout: float = 60,
    allow_unverified: bool = False,
    retries: int = 3,
) -> Path:
    """Download ``url`` to ``dest`` atomically, resuming and verifying it.

    ``sha256`` is the full hex digest or, like torch.hub's ``check_hash``, a
    prefix of at least 8 hex digits (torchvision embeds the first 8 in its file
    names); a prefix only guards against corruption, not against tampering.
    ``sha256=None`` is refused unless ``allow_unverified=True``.

    If ``dest`` exists and matches, it is returned without touching the network.
    Otherwise bytes go to ``<dest>.part``; an existing ``.part`` is resumed with a
    ``Range`` request (a server that answers 200 instead of 206 restarts it from
    zero). An interrupted transfer is resumed up to ``retries`` times; after that
    the ``.part`` is kept for the next call. Size and hash are checked before the
    ``.part`` is renamed onto ``dest``; a mismatch deletes it and raises
    :class:`ChecksumError` / :class:`DownloadError`.
    """
    dest = Path(dest)
    expected = _normalise_hash(sha256, url, allow_unverified)
    scheme = urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs can be downloaded, got {url!r}")

    if dest.is_file():
        if _is_good(dest, expected, size):
            log.debug("%s already present and verified", dest)
            return dest
        log.warning("%s exists but does not match its checksum/size; downloading it again", dest)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    show = progress and bool(getattr(sys.stderr, "isatty", lambda: False)())
    with FileLock(dest.with_name(dest.name + ".lock")):
        # Another process (e.g. another DDP rank) may have finished while we waited.
        if dest.is_file() and _is_good(dest, expected, size):
            return dest
        attempt = 0
        while True:
            try:
                _fetch_into(url, part, size, timeout=timeout, progress=show, label=dest.name)
                break
            except _Interrupted as err:
                attempt += 1
                if attempt > retries:
                    raise DownloadError(
                        f"download of {url} was interrupted ({err}); the partial file {part} "
                        "was kept: run again to resume"
                    ) from err
                log.warning(
                    "download of %s interrupted (%s); resuming (%d/%d)", url, err, attempt, retries
                )
                time.sleep(_RETRY_DELAY_S * attempt)
        _verify_part(part, url, expected, size)
        os.replace(part, dest)
        # Safe to remove only now: whoever waits on it will find `dest` good. After a
        # failure it stays, so that waiting processes keep serialising on one lock.
        dest.with_name(dest.name + ".lock").unlink(missing_ok=True)
    return dest


def _is_good(path: Path, expected: str | None, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return expected is None or sha256_of(path).startswith(expected)


def _verify_part(part: Path, url: str, expected: str | None, size: int | None) -> None:
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink()
        raise DownloadError(
            f"{url} gave {got_size} bytes but {size} were expected; the partial file was "
            "deleted. Run again to retry; if it persists the file on the server has changed "
            "or the URL is wrong."
        )
    if expected is None:
        return
    actual = sha256_of(part)
    if not actual.startswith(expected):
        part.unlink()
        raise ChecksumError(
            f"checksum mismatch for {url}: expected sha256 {_describe(expected)}, got {actual}. "
            "The partial download was deleted. Run again to download it from scratch; if it "
            "still fails, the file on the server has changed or the URL is wrong: check the "
            "URL and pass the sha256 you trust."
        )


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


def _fetch_into(
    url: str, part: Path, size: int | None, *, timeout: float, progress: bool, label: str
) -> None:
    """One HTTP request appending to (or restarting) ``part``; raises _Interrupted if cut short."""
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size > 0:
        return  # already complete: only verification is left
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            return  # nothing after `offset`: the .part holds it all; verification decides
        raise DownloadError(f"could not download {url}: HTTP {err.code} {err.reason}") from err
    except (URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"could not reach {url}: {reason}") from err

    with response:
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start is not None and start != offset:
                part.unlink()
                raise _Interrupted(f"server resumed at byte {start} instead of {offset}")
            mode = "ab"
        else:
            if offset:
                log.info("%s does not support resuming; restarting from zero", url)
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None and length.isdigit() else None
        total = offset + remaining if remaining is not None else size
        received = 0
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (http.client.IncompleteRead, ConnectionError, TimeoutError) as err:
                    raise _Interrupted(
                        f"{type(err).__name__} after {offset + received} bytes"
                    ) from err
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if remaining is not None and received < remaining:
        raise _Interrupted(f"connection closed after {offset + received} of {total} bytes")


# --------------------------------------------------------------------------- extraction


def _check_name(name: str, archive: Path) -> str:
    """Normalised relative POSIX path of a member, or UnsafeArchiveError."""
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: refusing member with an empty or NUL name {name!r}")
    for flavour in (PurePosixPath(name), PureWindowsPath(name)):
        if flavour.is_absolute() or flavour.drive or flavour.root:
            raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: absolute path")
        if ".." in flavour.parts:
            raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: '..' in its path")
    clean = posixpath.normpath(name)
    if clean in (".", ""):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: empty path")
    return clean


def _ancestors(path: str) -> Iterable[str]:
    parent = posixpath.dirname(path)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> list[str]:
    files = []
    for info in zf.infolist():
        name = _check_name(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: symlink")
        if not info.is_dir():
            files.append(name)
    return files


def _tar_members(tf: tarfile.TarFile, archive: Path) -> list[str]:
    members = tf.getmembers()
    links = set()
    for m in members:
        name = _check_name(m.name, archive)
        if m.issym():
            target = m.linkname
            if PurePosixPath(target).is_absolute() or PureWindowsPath(target).drive:
                raise UnsafeArchiveError(
                    f"{archive}: refusing symlink {m.name!r} -> {target!r}: absolute target"
                )
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if resolved == ".." or resolved.startswith("../"):
                raise UnsafeArchiveError(
                    f"{archive}: refusing symlink {m.name!r} -> {target!r}: points outside"
                )
            links.add(name)
        elif m.islnk():
            try:
                _check_name(m.linkname, archive)
            except UnsafeArchiveError as err:
                raise UnsafeArchiveError(
                    f"{archive}: refusing hard link {m.name!r} -> {m.linkname!r}: points outside"
                ) from err
        elif not (m.isreg() or m.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: refusing member {m.name!r}: device, FIFO or other special file"
            )
    files = []
    for m in members:
        name = posixpath.normpath(m.name)
        paths = [name] + ([posixpath.normpath(m.linkname)] if m.islnk() else [])
        for path in paths:
            via = next((a for a in _ancestors(path) if a in links), None)
            if via is not None:
                raise UnsafeArchiveError(
                    f"{archive}: refusing member {m.name!r}: it lies beneath the symlink {via!r}"
                )
        if m.isreg() or m.islnk():
            files.append(name)
    return files


def extract_archive(archive: Path, dest_dir: Path) -> list[Path]:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest_dir``; return its files.

    Every member is checked before anything is written: absolute paths, ``..``
    components, symlinks or hard links that point outside (or members reached
    through a symlink), and device files/FIFOs raise :class:`UnsafeArchiveError`
    naming the member. Extraction goes to a temporary folder beside ``dest_dir``
    that is renamed onto it at the end, so ``dest_dir`` either holds the whole
    archive or does not exist. ``dest_dir`` must not exist or be empty.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise FileExistsError(
            f"cannot extract {archive} into {dest_dir}: it already exists and is not an "
            "empty folder; delete it or choose another destination"
        )
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = _zip_members(zf, archive)
            return _extract_to(dest_dir, names, zf.extractall)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            names = _tar_members(tf, archive)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: belt and braces
                return _extract_to(dest_dir, names, lambda d: tf.extractall(d, filter="data"))
            return _extract_to(dest_dir, names, tf.extractall)
    raise ValueError(f"{archive} is neither a zip nor a tar archive")


def _extract_to(dest_dir: Path, names: list[str], extract) -> list[Path]:
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".partial", dir=dest_dir.parent)
    )
    try:
        extract(tmp)
        if dest_dir.exists():
            dest_dir.rmdir()  # checked empty by the caller
        os.replace(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [dest_dir / name for name in sorted(names)]


# --------------------------------------------------------------------------- datasets


def fetch_dataset(
    name: str,
    data_dir: Path,
    *,
    sha256: str | None = None,
    allow_unverified: bool = False,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Install dataset ``name`` as ``data_dir/<name>/*.png`` and return that folder.

    Does nothing (and no network access) when the folder already holds the
    expected number of PNGs. The archive is downloaded to
    ``data_dir/downloads/`` (resumable), extracted beside the target and moved
    into place in one rename, then deleted unless ``keep_archive``. ``sha256``
    overrides the registry's checksum (DIV2K has none: pass one, or
    ``allow_unverified=True``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    data_dir = Path(data_dir)
    target = data_dir / name
    if target.is_dir() and any(target.iterdir()):
        count = len(list(target.glob("*.png")))
        if count == spec.num_images:
            return target
        raise FileExistsError(
            f"{target} holds {count} PNG images but {name} has {spec.num_images}: "
            "delete the folder and run again to re-download it"
        )

    remote = spec.file
    archive = download_file(
        remote.url,
        data_dir / "downloads" / remote.filename,
        sha256 if sha256 is not None else remote.sha256,
        remote.size,
        progress=progress,
        allow_unverified=allow_unverified,
    )
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=data_dir) as tmp:
        root = Path(tmp) / "contents"
        extract_archive(archive, root)
        src = root / name if (root / name).is_dir() else root
        count = len(list(src.glob("*.png")))
        if count != spec.num_images:
            raise DownloadError(
                f"{archive} holds {count} PNG images under {name}/ but {spec.num_images} were "
                "expected: delete the archive and run again"
            )
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(src, target)
    if not keep_archive:
        archive.unlink()
    return target


def main(argv: list[str] | None = None) -> None:
    """``python -m sr_lightning.data.download DIV2K_train_HR DIV2K_valid_HR``."""
    parser = argparse.ArgumentParser(description="Download and extract SR datasets.")
    parser.add_argument("names", nargs="+", choices=sorted(DATASETS))
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("SR_DATA_DIR", "data"))
    )
    parser.add_argument("--sha256", help="expected sha256 of the archive (one name only)")
    parser.add_argument("--allow-unverified", action="store_true", help="skip the checksum")
    parser.add_argument("--keep-archive", action="store_true")
    args = parser.parse_args(argv)
    if args.sha256 and len(args.names) != 1:
        parser.error("--sha256 applies to a single dataset name")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.names:
        try:
            path = fetch_dataset(
                name,
                args.data_dir,
                sha256=args.sha256,
                allow_unverified=args.allow_unverified,
                keep_archive=args.keep_archive,
            )
        except (ValueError, OSError, DownloadError) as err:
            sys.exit(f"error: {err}")
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
