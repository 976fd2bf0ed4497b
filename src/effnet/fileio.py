"""Atomic file writes: a reader sees the old file or the new one, never half of one.

For fault tests, `EFFNET_FAULT_KILL=NAME:N:BYTES` makes the N-th atomic write of a file called
NAME (in this process) write only its first BYTES bytes to the temporary file, fsync them, and
SIGKILL the process: a real death half-way through a save, with the half file on disk.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

FAULT_ENV = "EFFNET_FAULT_KILL"
_writes: Counter = Counter()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _injected_death(path: Path) -> int | None:
    """Bytes to write before dying, when EFFNET_FAULT_KILL names this write; else None."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    name, nth, nbytes = spec.rsplit(":", 2)
    if name != path.name:
        return None
    _writes[name] += 1
    return int(nbytes) if _writes[name] == int(nth) else None


def atomic_write(path: Path, write: Callable[[Path], None], suffix: str = "") -> None:
    """Have `write` fill a temporary file beside `path` (named to end in `suffix`, for writers that
    insist on one), fsync it, rename it over `path`, fsync the directory. Every file effnet saves
    goes through here."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    tmp.unlink(missing_ok=True)  # left by a killed process of the same pid
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    die_after = _injected_death(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            if die_after is not None:
                f.write(data[:die_after])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            f.write(data)

    atomic_write(path, write)
