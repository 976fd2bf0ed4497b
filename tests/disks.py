"""A real small disk for disk-full tests: a tmpfs mounted for one test, where writes end in a real
ENOSPC. Mounting needs root (and a kernel that lets this process mount); elsewhere the test is
skipped, with the reason in pytest's summary."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import procs


@contextlib.contextmanager
def small_disk(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` (created) for the `with` block; unmounted after,
    however the block ends."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs, and mounting one needs root")
    path.mkdir()
    done = procs.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "effnet-test", str(path)],
                     timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a real full disk: {done.stderr.strip()}")
    try:
        yield path
    finally:
        procs.run(["umount", str(path)], timeout=30, check=True)


def resize(disk: Path, size: int) -> None:
    """Grow (or shrink) a mounted small_disk: space freed without touching its files."""
    procs.run(["mount", "-o", f"remount,size={size}", str(disk)], timeout=30, check=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """A file taking all the disk's free space but about `leave` bytes; delete it to free them."""
    st = os.statvfs(disk)
    todo = max(0, st.f_bavail * st.f_frsize - leave)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        while todo > 0:
            todo -= f.write(b"\xff" * min(todo, 1 << 20))
    return filler
