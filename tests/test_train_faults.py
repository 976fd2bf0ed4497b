"""Faults during training, each in a real `python -m effnet train` process:

* killed (SIGKILL, injected by EFFNET_FAULT_KILL in effnet.fileio) half-way through writing each
  part of a checkpoint and the run's weight link: the previous checkpoint still loads, `--resume`
  completes, removes the dead writer's temporaries, and the result equals an uninterrupted run bit
  for bit;
* SIGTERM / SIGINT: a final checkpoint, exit 143 / 130 with one line, and an exact resume;
* a file-size limit (RLIMIT_FSIZE) during a save, and a real full disk (ENOSPC on a small tmpfs,
  tests/disks.py) during a checkpoint, the epoch's metrics.csv and the end-of-run report: one line,
  exit 1, the previous files kept, no temporary left, and a resume completes once there is space.

None of these runs passes --deterministic: on CPU the default run already replays exactly.
"""

import csv
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import disks
import procs
from effnet.rundir import RunDir
from effnet.train import checkpoint as ckpt

# a 0.1 M-parameter B0 (phi = -6) on 256 digits: 8 steps of 32 per epoch, 2 epochs
TINY = ["--phi", "-6", "--train-subset", "256", "--val-subset", "64", "-b", "32", "--no-progress",
        "--no-tensorboard", "--epochs", "2", "--ckpt-every-steps", "2"]
TOTAL_STEPS = 16


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _train(*args, env=None, **kw) -> subprocess.CompletedProcess:
    return procs.run([sys.executable, "-m", "effnet", "train", *args], env=env or _env(), timeout=300,
                     **kw)


def _pointer(run: Path) -> dict | None:
    try:
        return json.loads((run / "checkpoints" / "LATEST").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def assert_same_run(ref: Path, run: Path) -> None:
    for name in ("last.safetensors", "last_ema.safetensors"):
        _assert_same_weights(ref / name, run / name)
    keep = ("epoch", "global_step", "images", "train_loss", "val_loss", "top1", "ema_top1")
    ref_rows, run_rows = ([{k: r[k] for k in keep} for r in csv.DictReader((d / "metrics.csv").open())]
                          for d in (ref, run))
    assert run_rows == ref_rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every faulted run must end up equal to."""
    ref = tmp_path_factory.mktemp("faults") / "ref"
    done = _train(*TINY, "--output", str(ref))
    assert done.returncode == 0, done.stderr[-3000:]
    return ref


def _temporaries(run: Path) -> list[Path]:
    """What only a save in progress (or a dead one) leaves: `.tmp-*` checkpoint directories and
    `.NAME.PID.tmp` files (effnet.fileio)."""
    return sorted(p for p in run.rglob(".*") if p.name.startswith(".tmp-") or p.name.endswith(".tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("victim, nth, nbytes, published", [
    ("model.safetensors", 2, 4096, 2),  # the second checkpoint's weights, 4 KB in
    ("state.pt", 2, 300, 2),  # its optimiser/RNG state
    ("LATEST", 2, 5, 2),  # the pointer that publishes it
    ("last.safetensors", 2, 4096, 4),  # the run's link to its weights, made once it is published
])
def test_killed_while_writing_a_checkpoint_keeps_the_previous_and_resumes_exactly(
        tmp_path, reference, victim, nth, nbytes, published):
    run = tmp_path / "run"
    died = _train(*TINY, "--output", str(run), env=_env(EFFNET_FAULT_KILL=f"{victim}:{nth}:{nbytes}"))
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert not (run / "summary.json").exists()
    # the half-written file reached the disk under a temporary name nobody points to
    half = list(run.rglob(f".{victim}.*.tmp"))
    assert [p.stat().st_size for p in half] == [nbytes]
    assert _pointer(run)["global_step"] == published
    state = ckpt.load_state(RunDir(run).latest_checkpoint())
    assert state["global_step"] == published
    # last.safetensors is still the whole step-2 weights file (for the link, not yet pruned)
    _assert_same_weights(run / "last.safetensors", run / "checkpoints" / "step-00000002" / ckpt.MODEL_FILE)

    done = _train("--resume", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout
    assert not _temporaries(run)  # the dead writer's leftovers are gone
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == [f"step-{TOTAL_STEPS:08d}"]
    assert_same_run(reference, run)


def _start_then_signal(run: Path, sig: int) -> tuple[subprocess.Popen, str, int]:
    with procs.started([sys.executable, "-m", "effnet", "train", *TINY, "--output", str(run)],
                       env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            p = _pointer(run)
            if p and p["global_step"] >= 2:  # training is under way, a checkpoint exists
                proc.send_signal(sig)
                break
            time.sleep(0.005)
        _, err = proc.communicate(timeout=240)
    return proc, err, p["global_step"] if p else -1


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_exits_128_plus_n_and_resumes_exactly(tmp_path, reference, sig, code):
    run = tmp_path / "run"
    proc, err, seen = _start_then_signal(run, sig)
    assert proc.returncode == code, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"stopped by {signal.Signals(sig).name}" in lines[0], err
    assert f"--resume {run}" in lines[0]
    state = ckpt.load_state(RunDir(run).latest_checkpoint())
    step = state["global_step"]
    assert seen <= step < TOTAL_STEPS and f"after step {step} of {TOTAL_STEPS}" in lines[0]
    assert not (run / "summary.json").exists()

    done = _train("--resume", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(reference, run)


def _file_size_limit(nbytes: int):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


@pytest.mark.slow
def test_file_size_limit_during_a_save_keeps_the_previous_checkpoint(tmp_path, reference):
    run = tmp_path / "run"
    first = _train(*TINY, "--output", str(run), env=_env(EFFNET_FAULT_KILL="state.pt:2:300"))
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    before = _pointer(run)
    model_size = (run / "last.safetensors").stat().st_size
    # resumed where no file as large as the weights can be written: the next save fails
    full = _train("--resume", str(run), preexec_fn=_file_size_limit(model_size // 2))
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 1, full.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("effnet: error: cannot write checkpoint"), lines
    assert "File too large" in lines[0] and "last saved checkpoint is kept" in lines[0]
    assert _pointer(run) == before
    assert ckpt.load_state(RunDir(run).latest_checkpoint())["global_step"] == before["global_step"]
    assert not _temporaries(run)
    assert len(list((run / "checkpoints").glob("step-*"))) == 1

    done = _train("--resume", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(reference, run)


def _out_of_space(proc: subprocess.CompletedProcess, *words: str) -> None:
    """The process ended as a full disk must: one line naming what could not be written, exit 1."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("effnet: error: "), lines
    for w in ("No space left on device", *words):
        assert w in lines[0], lines[0]


def _hashes(run: Path, names) -> dict[str, str]:
    return {n: hashlib.sha256((run / n).read_bytes()).hexdigest() for n in names}


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_keeps_the_previous_and_resumes_once_space_is_freed(
        tmp_path, reference):
    latest = RunDir(reference).latest_checkpoint()
    # a real disk with room for the run's files, one checkpoint and half the next one's weights
    size = sum(p.stat().st_size for p in latest.iterdir()) + (latest / ckpt.MODEL_FILE).stat().st_size // 2
    with disks.small_disk(tmp_path / "disk", size + (256 << 10)) as disk:
        run = disk / "run"
        full = _train(*TINY, "--output", str(run))
        _out_of_space(full, "cannot write checkpoint step-00000004", "last saved checkpoint is kept")
        assert _pointer(run)["global_step"] == 2
        assert ckpt.load_state(RunDir(run).latest_checkpoint())["global_step"] == 2
        _assert_same_weights(run / "last.safetensors", RunDir(run).latest_checkpoint() / ckpt.MODEL_FILE)
        assert not _temporaries(run)
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["LATEST", "step-00000002"]

        disks.resize(disk, 4 * size)  # space freed
        done = _train("--resume", str(run))
        assert done.returncode == 0, done.stderr[-3000:]
        assert_same_run(reference, run)


REPORT = ("metrics.csv", "summary.json", "loss.png", "accuracy.png", "lr.png", "config.yaml", "spec.json")


@pytest.mark.slow
def test_disk_full_while_writing_metrics_or_the_report_keeps_the_previous_files(tmp_path, reference):
    with disks.small_disk(tmp_path / "disk", 64 << 20) as disk:
        run = disk / "run"
        # killed saving the end of epoch 1 (step 8): metrics.csv has epoch 1's row, step 6 is published
        died = _train(*TINY, "--output", str(run), env=_env(EFFNET_FAULT_KILL="state.pt:4:300"))
        assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
        files = ("metrics.csv", "config.yaml", "spec.json")
        before, dead_writers = _hashes(run, files), _temporaries(run)
        filler = disks.fill(disk)
        full = _train("--resume", str(run))  # steps 7-8, then epoch 1's row: metrics.csv is the first write
        _out_of_space(full, str(run / "metrics.csv"))
        assert _hashes(run, files) == before
        assert _temporaries(run) == dead_writers  # only the killed run's; none of this one

        filler.unlink()
        done = _train("--resume", str(run))
        assert done.returncode == 0, done.stderr[-3000:]
        assert_same_run(reference, run)
        assert not _temporaries(run)

        before = _hashes(run, REPORT)
        filler = disks.fill(disk)
        full = _train("--resume", str(run))  # a finished run: only its report is written again
        _out_of_space(full, str(run / "loss.png"))
        assert _hashes(run, REPORT) == before
        assert not _temporaries(run)

        filler.unlink()
        again = _train("--resume", str(run))
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads((run / "summary.json").read_text())["global_step"] == TOTAL_STEPS
