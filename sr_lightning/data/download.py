"""Datasets fetched from the web: their archives, safe extraction, and the command line.

Why not plain ``extractall``: an archive must not be able to write outside its destination,
and a half-done extraction must never look complete. Hence:

* the archive is fetched with :func:`sr_lightning.common.download.download_file` (resumable,
  size and sha256 checked before it is renamed into place);
* :func:`extract_archive` checks every member before writing anything, extracts
  into a temporary folder beside the destination and renames it into place, so
  a half-done extraction never looks complete.
* :func:`fetch_dataset` combines both for the datasets in :data:`DATASETS`.

Run ``python -m sr_lightning.data.download --help`` for the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from sr_lightning.common.download import DownloadError, RemoteFile, download_file

log = logging.getLogger(__name__)


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the destination, or is a special file."""


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
