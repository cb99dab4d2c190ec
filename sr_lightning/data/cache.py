"""Decoded-image caches on disk: decode a set's PNGs once, then memory-map uint8 pixels.

Large training sets (DIV2K: 800 2K images, about 6 GB of uint8) do not fit comfortably in
every rank's RAM, and decoding PNGs per sample would bound any GPU. So a set is decoded
once into one flat uint8 file (``pixels.u8``, each image C×H×W contiguous) plus an
``index.json`` of names, shapes and offsets; workers then slice the memory map, and every
process on a node shares the same page cache.

A cache lives at ``<cache_dir>/images/<set>-<key>/``. The key hashes the set's resolved
file list with each file's size and mtime, the colour space and the skip-bad policy, so
editing, adding or removing an image makes a new cache (the stale one is pruned). A cache
is written into a hidden temporary folder and renamed into place only when complete, so a
crash never leaves a half cache at the final path; a file lock makes concurrent builders
(DDP ranks, parallel runs) wait for one of them instead of decoding the set again. The
lock is only an economy: correctness rests on the atomic rename alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from filelock import FileLock
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
PIXELS_FILE = "pixels.u8"
INDEX_FILE = "index.json"
CACHE_SUBDIR = "images"

T = TypeVar("T")
R = TypeVar("R")


# -- memory-mapped images -------------------------------------------------------------------

# One mapping per pixels file and process. Forked DataLoader workers inherit the mapping;
# spawned ones (macOS, Windows) re-open it on first use, since only the reference is pickled.
_MAPS: dict[str, torch.Tensor] = {}


def _mapped_file(path: str) -> torch.Tensor:
    flat = _MAPS.get(path)
    if flat is None:
        with open(path, "rb") as f:
            # ACCESS_COPY (MAP_PRIVATE): reads share the page cache, and an in-place op on a
            # batch view can never write into the cache file (nor crash on a read-only page).
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        flat = _MAPS[path] = torch.frombuffer(buffer, dtype=torch.uint8)
    return flat


@dataclass(frozen=True)
class MappedImage:
    """A reference to one uint8 image (C, H, W) inside a cache's pixels file.

    It pickles as three numbers and a path, so DataLoader workers and spawned processes
    receive references, never the pixels.
    """

    path: str
    offset: int
    shape: tuple[int, int, int]

    def load(self) -> torch.Tensor:
        c, h, w = self.shape
        return _mapped_file(self.path)[self.offset : self.offset + c * h * w].view(c, h, w)


# -- cache keys -------------------------------------------------------------------------------


def source_fingerprint(files: Sequence[Path], channels: int | None, skip_bad: bool) -> dict:
    """What a cache is made from: files (resolved path, size, mtime), colour space, policy."""
    entries = []
    for path in files:
        st = Path(path).stat()
        entries.append([str(Path(path).resolve()), st.st_size, st.st_mtime_ns])
    return {
        "format": CACHE_FORMAT,
        "channels": None if channels is None else int(channels),  # None: as decoded
        "skip_bad": bool(skip_bad),
        "files": entries,
    }


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cache_key(fingerprint: dict) -> str:
    return _digest(fingerprint)[:20]


def lineage_key(fingerprint: dict) -> str:
    """Same files (by path) and settings, any contents: caches of one lineage replace each other."""
    stable = {**fingerprint, "files": [entry[0] for entry in fingerprint["files"]]}
    return _digest(stable)[:20]


def cache_path(cache_dir: str | Path, set_name: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", set_name).strip("._") or "set"
    return Path(cache_dir) / CACHE_SUBDIR / f"{safe}-{key}"


# -- reading ------------------------------------------------------------------------------------


def read_cache(folder: Path, key: str | None = None) -> tuple[list[str], list[MappedImage]] | None:
    """Names and image references of a complete cache, or None when absent or not valid."""
    try:
        index = json.loads((folder / INDEX_FILE).read_text())
        pixels = folder / PIXELS_FILE
        if index.get("format") != CACHE_FORMAT or (key is not None and index.get("key") != key):
            return None
        if pixels.stat().st_size != index["bytes"]:
            return None
        refs = [
            MappedImage(str(pixels), int(offset), tuple(int(s) for s in shape))
            for offset, shape in zip(index["offsets"], index["shapes"], strict=True)
        ]
        return list(index["names"]), refs
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- building ---------------------------------------------------------------------------------


def ordered_map(
    fn: Callable[[T], R], items: Sequence[T], workers: int, window: int | None = None
) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with at most ``window`` results pending.

    Pillow releases the GIL while it decodes, so threads decode in parallel; the window keeps
    memory bounded when the consumer (a disk writer) is slower than the decoders.
    """
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    window = window or 2 * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def _write_cache(
    tmp: Path,
    files: Sequence[Path],
    decode: Callable[[Path], torch.Tensor | None],
    key: str,
    fingerprint: dict,
    set_name: str,
    workers: int,
) -> None:
    tmp.mkdir(parents=True)
    names, shapes, offsets, skipped = [], [], [], []
    offset = 0
    bar = tqdm(total=len(files), desc=f"caching {set_name}", unit="img", leave=False)
    with open(tmp / PIXELS_FILE, "wb") as out:
        for path, image in zip(files, ordered_map(decode, files, workers), strict=True):
            bar.update(1)
            if image is None:
                skipped.append(str(path))
                continue
            if image.dtype != torch.uint8 or image.dim() != 3:
                raise TypeError(f"cache decoder must return uint8 (C, H, W); got {image.dtype}")
            data = image.contiguous().numpy().tobytes()
            out.write(data)
            names.append(Path(path).stem)
            shapes.append(list(image.shape))
            offsets.append(offset)
            offset += len(data)
        out.flush()
        os.fsync(out.fileno())
    bar.close()
    index = {
        "format": CACHE_FORMAT,
        "key": key,
        "lineage": lineage_key(fingerprint),
        "set": set_name,
        "bytes": offset,
        "names": names,
        "shapes": shapes,
        "offsets": offsets,
        "skipped": skipped,
        "sources": fingerprint,
    }
    with open(tmp / INDEX_FILE, "w") as f:
        json.dump(index, f)
        f.flush()
        os.fsync(f.fileno())


def _remove_quietly(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _prune_stale(final: Path, lineage: str) -> None:
    """Remove older caches of the same files and settings (their contents changed since)."""
    for other in final.parent.glob(f"{final.name.rsplit('-', 1)[0]}-*"):
        if other == final or not other.is_dir():
            continue
        try:
            index = json.loads((other / INDEX_FILE).read_text())
        except (OSError, ValueError):
            continue
        if index.get("lineage") == lineage:
            log.info("removing stale image cache %s", other)
            _remove_quietly(other)
            other.with_name(other.name + ".lock").unlink(missing_ok=True)


def build_or_open(
    files: Sequence[Path],
    decode: Callable[[Path], torch.Tensor | None],
    cache_dir: str | Path,
    set_name: str,
    channels: int | None,
    skip_bad: bool = False,
    workers: int | None = None,
) -> tuple[list[str], list[MappedImage]]:
    """The set's disk cache: opened when a valid one exists, otherwise built once, atomically.

    ``decode(path)`` returns the image as uint8 (C, H, W) in the model's colour space, or None
    to skip it (unreadable with ``skip_bad``). Concurrent callers for the same key wait on a
    file lock while one of them builds.
    """
    fingerprint = source_fingerprint(files, channels, skip_bad)
    key = cache_key(fingerprint)
    final = cache_path(cache_dir, set_name, key)
    cached = read_cache(final, key)
    if cached is not None:
        return cached
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        cached = read_cache(final, key)  # built by another process while we waited
        if cached is not None:
            return cached
        if final.exists():
            log.warning("image cache %s is not valid (incomplete or edited); rebuilding", final)
            _remove_quietly(final)
        # Holding the lock, any temporary folder of this key is a crashed build's leftover.
        for leftover in final.parent.glob(f".{final.name}.tmp-*"):
            _remove_quietly(leftover)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        log.info("building image cache for %s (%d files) at %s", set_name, len(files), final)
        try:
            _write_cache(
                tmp, files, decode, key, fingerprint, set_name, workers or default_workers()
            )
            os.rename(tmp, final)
            _MAPS.pop(str(final / PIXELS_FILE), None)  # a rebuilt cache is a new file
        finally:
            _remove_quietly(tmp)
        _prune_stale(final, lineage_key(fingerprint))
    cached = read_cache(final, key)
    if cached is None:  # pragma: no cover - only if the file system lies about the rename
        raise RuntimeError(f"image cache {final} could not be read back after building it")
    return cached


def estimate_decoded_bytes(shapes: Iterable[tuple[int, int, int]]) -> int:
    total = 0
    for c, h, w in shapes:
        total += c * h * w
    return total


# -- torch.compile ------------------------------------------------------------------------------


def configure_compile_cache(cache_dir: str | Path) -> str:
    """Point inductor's kernel cache under ``cache_dir`` unless the user already chose one.

    Inductor reads ``TORCHINDUCTOR_CACHE_DIR`` when it first compiles, so call this before
    ``torch.compile`` runs; reruns and sweeps then reuse the compiled kernels.
    """
    target = str(Path(cache_dir).expanduser() / "inductor")
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", target)
