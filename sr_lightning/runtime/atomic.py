"""Writing a file whole or not at all, the one way every app and callback does it.

A temporary file beside the target (same file system, hidden, ending in the real suffix) is
renamed into place when it is complete, so readers (sweep summaries, tools watching a run
dir, a resumed job) never see half a file and an interrupted write leaves nothing behind.

A SIGKILL mid-write leaves the hidden temporary file (``.<stem>.p<pid>.<random>.part<suffix>``)
behind; :func:`remove_stale_parts` deletes such files, older than the running process and not
written by a live one, when the next run starts in that folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)
# a temporary file of atomic_output (the pid since this version) or of an older keep_previous
_PART = re.compile(r"^\.(?P<stem>.*?)(?:\.p(?P<pid>\d+))?\.[^.]*\.part(?:\.[^.]*)?$")
_OLD_PREVIOUS = re.compile(r"^\.previous\.ckpt\.(?P<pid>\d+)\.tmp$")


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
        dir=path.parent, prefix=f".{path.stem}.p{os.getpid()}.", suffix=f".part{path.suffix}"
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


def process_start_time() -> float:
    """When this process started (epoch seconds); the import time where /proc is missing."""
    try:
        stat = Path(f"/proc/{os.getpid()}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime, in clock ticks
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


_IMPORTED_AT = time.time()


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host (also when it belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder`` (not recursive).

    A file counts as stale when it is older than this process and the process named in it
    (if any) is gone, so a concurrent writer's file in progress is never touched.
    """
    folder = Path(folder)
    started = process_start_time() - 1.0  # /proc's tick and mtime rounding
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _PART.match(entry.name) or _OLD_PREVIOUS.match(entry.name)
        if match is None:
            continue
        pid = match.group("pid")
        try:
            if not entry.is_file() or entry.stat().st_mtime >= started:
                continue
            if pid is not None and int(pid) != os.getpid() and pid_alive(int(pid)):
                continue
            entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    if removed:
        log.info("removed %d temporary file(s) left by a killed run in %s", len(removed), folder)
    return removed
