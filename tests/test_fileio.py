"""effnet.fileio.atomic_write: the one way effnet replaces a file."""

from __future__ import annotations

import pytest

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


def test_the_temporary_ends_in_the_suffix_a_writer_insists_on(tmp_path):
    seen = []

    def write(tmp):
        seen.append(tmp.name)
        tmp.write_bytes(b"new")

    atomic_write(tmp_path / "model.pt2", write, suffix=".pt2")
    assert seen[0].endswith(".pt2") and seen[0] != "model.pt2"
    assert (tmp_path / "model.pt2").read_bytes() == b"new"
