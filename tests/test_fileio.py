"""effnet.fileio.atomic_write: the one way effnet replaces a file."""

from __future__ import annotations

import os

import pytest

import procs
from effnet.fileio import atomic_write, atomic_write_bytes


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.onnx"
    atomic_write_bytes(path, b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_dead_writers_temporary_is_removed_by_the_next_write_and_nothing_else(tmp_path):
    dead = _reaped_pid()
    left = {f".model.onnx.{dead}.tmp", f".model.onnx.{os.getpid()}.tmp"}  # a dead writer; this pid's
    kept = {f".model.onnx.{os.getppid()}.tmp",  # a live writer's (pytest's parent is alive)
            f".other.onnx.{dead}.tmp", f".model.onnx.{dead}.tmp.bak", ".model.onnx.notes.tmp",
            "model.onnx.1.tmp", f"model.onnx.{dead}.tmp"}  # another file's, or a user's
    for name in left | kept:
        (tmp_path / name).write_bytes(b"x")
    atomic_write_bytes(tmp_path / "model.onnx", b"new")
    assert {p.name for p in tmp_path.iterdir()} == kept | {"model.onnx"}


def _reaped_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = procs.popen(["true"])
    procs.kill_group(proc)
    return proc.pid
