"""Resumable, checksummed downloads: the datasets' archives and the pretrained weights.

Why not plain ``urlretrieve``: DIV2K's training zip is 3.5 GB, so an interrupted transfer
must resume rather than restart, and a truncated or swapped file must never be mistaken for a
good one. :func:`download_file` streams into ``<dest>.part``, resumes with an HTTP ``Range``
request, checks size and sha256 and only then renames into place. Datasets
(:mod:`sr_lightning.data.download`) and pretrained backbones
(:mod:`sr_lightning.common.pretrained`) are fetched with it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
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

__all__ = ["ChecksumError", "DownloadError", "RemoteFile", "download_file", "sha256_of"]


class DownloadError(RuntimeError):
    """A download could not be completed (network error, HTTP error, bad size)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected sha256."""


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
    lock_file = dest.with_name(dest.name + ".lock")
    with FileLock(lock_file):
        try:
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
                            f"download of {url} was interrupted ({err}); the partial file "
                            f"{part} was kept: run again to resume"
                        ) from err
                    log.warning(
                        "download of %s interrupted (%s); resuming (%d/%d)",
                        url,
                        err,
                        attempt,
                        retries,
                    )
                    time.sleep(_RETRY_DELAY_S * attempt)
            _verify_part(part, url, expected, size)
            os.replace(part, dest)
        finally:
            # removed while still held, after success or failure (no debris in $TORCH_HOME):
            # filelock (>= 4) makes a process waiting on it lock a new file, so waiters still
            # take turns (tests/test_new_user.py)
            lock_file.unlink(missing_ok=True)
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
