"""Writing a file whole or not at all, the one way every app and callback does it.

A temporary file beside the target (same file system, hidden, ending in the real suffix) is
renamed into place when it is complete, so readers (sweep summaries, tools watching a run
dir, a resumed job) never see half a file and an interrupted write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(
    path: str | Path, overwrite: bool = True, durable: bool = False
) -> Iterator[Path]:
    """A temporary path in ``path``'s folder, renamed to ``path`` only if the block succeeds.

    Without ``overwrite``, an existing file is an error, checked before and at the rename
    (a hard link, which fails if the name exists, where the file system supports one).
    ``durable`` flushes the file to disk before the rename (checkpoints: a crash right after
    must not leave an empty file under the real name).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=true to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # hidden, and ending in the real suffix so that writers and readers know the format
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename a finished temporary file into place (atomic; never replaces unless asked)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; pass overwrite=true to replace it") from None
    except OSError:  # no hard links here (some network / FUSE file systems)
        if path.exists():
            raise FileExistsError(
                f"{path} already exists; pass overwrite=true to replace it"
            ) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def write_atomic(path: str | Path, data: bytes | str, overwrite: bool = True) -> Path:
    """``data`` (bytes, or text as UTF-8) into ``path`` through :func:`atomic_output`."""
    with atomic_output(path, overwrite) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)
