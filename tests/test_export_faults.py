"""`effnet export` under faults, each in a real `python -m effnet export` process, for ONNX and
.pt2: killed half-way through writing the file (EFFNET_FAULT_KILL, effnet.fileio), and a real full
disk (a tmpfs, tests/disks.py). The file exported before stays whole and the one that loads; a
dead export's temporary is removed by the next export of the same file; a full disk is one line,
exit 1, with no temporary left."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

import disks
import procs
from effnet.tools import export as ex

SIZE = 64


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """What `effnet export` takes: a directory with a 0.1 M-parameter B0 (phi -6) as
    best.safetensors (the file carries its model config)."""
    from effnet.arch.scaling import scale_compound
    from effnet.models import build, get_spec
    from effnet.weights import save_weights

    d = tmp_path_factory.mktemp("export_source")
    torch.manual_seed(0)
    spec, _ = scale_compound(get_spec("efficientnet_b0"), -6)
    save_weights(build(spec, num_classes=10), d / "best.safetensors")
    return d


def _export_here(source: Path, out: Path, fmt: str) -> str:
    """What `effnet export` writes, written by this process (one torch import less to wait for);
    returns its SHA-256."""
    from effnet.cli.deploy_cmds import load_source

    model, classes, _ = load_source(str(source), None, None)
    ready, meta = ex.prepare(model), ex.metadata(model, classes, SIZE)
    if fmt == "onnx":
        ex.save_onnx(ready, out, SIZE, frozenset(), meta)
    else:
        ex.save_program(ex.export_program(ready, SIZE), out, meta)
    return _sha(out)


def _export(source: Path, out: Path, fmt: str, **env):
    return procs.run([sys.executable, "-m", "effnet", "export", str(source), "--format", fmt,
                      "--size", str(SIZE), "--output", str(out)],
                     env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=300)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_loads(path: Path, fmt: str) -> None:
    x = torch.randn(2, 3, SIZE, SIZE)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"image": x.numpy()})
    else:
        model, _ = ex.load_program(path)
        out = model(x)
    assert tuple(out.shape) == (2, 10)


FORMATS = [pytest.param(f, marks=pytest.mark.slow) for f in ex.FORMATS]


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_killed_half_way_keeps_the_previous_file_and_the_next_clears_its_temporary(
        tmp_path, source, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    out = tmp_path / f"model{ex.FORMATS[fmt]}"
    before = _export_here(source, out, fmt)
    died = _export(source, out, fmt, EFFNET_FAULT_KILL=f"{out.name}:1:4096")
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    assert _sha(out) == before
    _assert_loads(out, fmt)
    half = [p for p in tmp_path.iterdir() if p != out]  # the dead writer's, under its temporary name
    assert [(p.name.startswith(f".{out.name}.") and p.name.endswith(".tmp"), p.stat().st_size)
            for p in half] == [(True, 4096)]

    _export_here(source, out, fmt)  # the next export of that file (here: no second torch import)
    assert list(tmp_path.iterdir()) == [out]
    _assert_loads(out, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_onto_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, source, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    with disks.small_disk(tmp_path / "disk", 16 << 20) as disk:
        out = disk / f"model{ex.FORMATS[fmt]}"
        before = _export_here(source, out, fmt)
        filler = disks.fill(disk, leave=out.stat().st_size // 2)
        full = _export(source, out, fmt)
        lines = full.stderr.strip().splitlines()
        assert full.returncode == 1, full.stderr[-3000:]
        assert lines == [f"effnet: error: No space left on device: {out}"]
        assert _sha(out) == before
        assert sorted(disk.iterdir()) == sorted([out, filler])  # no temporary left
        _assert_loads(out, fmt)
