"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file effnet writes itself goes through `atomic_write`: the writer fills `.NAME.PID.tmp`
beside the file, which is fsynced and renamed over it. A writer that dies (SIGKILL, power loss)
leaves its temporary behind; the next write of the same file removes it, and any other temporary
of that file whose process is gone. Nothing else in the directory is touched.

For fault tests, `EFFNET_FAULT_KILL=NAME:N:BYTES` makes the N-th atomic write of a file called
NAME (in this process) leave only the first BYTES bytes of what its writer produced in the
temporary file, fsync them, and SIGKILL the process: a real death half-way through a save, with the
half file on disk. It applies to every writer (bytes, ONNX, .pt2, the run's weight links).
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
    """Bytes to leave before dying, when EFFNET_FAULT_KILL names this write; else None."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    name, nth, nbytes = spec.rsplit(":", 2)
    if name != path.name:
        return None
    _writes[name] += 1
    return int(nbytes) if _writes[name] == int(nth) else None


def _die_half_written(tmp: Path, nbytes: int) -> None:
    with open(tmp, "rb") as f:
        head = f.read(nbytes)
    tmp.unlink()  # the writer may have made a hard link (link_or_copy): never cut its source
    with open(tmp, "wb") as f:
        f.write(head)
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove `.NAME.PID.tmp` beside `path` left by a dead writer (or by an earlier process
    with this pid): exactly this module's temporary names for this file, never another file."""
    head, tail = f".{path.name}.", ".tmp"
    try:
        names = os.listdir(path.parent)
    except OSError:  # no directory yet: the write itself will say why it cannot go there
        return
    for name in names:
        pid = name[len(head):-len(tail)]
        if name.startswith(head) and name.endswith(tail) and pid.isdigit() and (
                int(pid) == os.getpid() or not _alive(int(pid))):
            (path.parent / name).unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a temporary file beside `path`, fsync it, rename it over `path`, fsync
    the directory. An OSError (a full disk) names `path`, not the temporary, and leaves `path` as
    it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove_stale_temporaries(path)
    die_after = _injected_death(path)
    try:
        write(tmp)
        if die_after is not None:
            _die_half_written(tmp, die_after)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.errno is not None and (e.filename is None or Path(e.filename) == tmp):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
