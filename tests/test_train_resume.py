"""Checkpoints survive kills: a SIGKILLed run resumed mid-epoch ends bit-identical to an
uninterrupted one; a diverged loss stops the run with one line and keeps the last good checkpoint.
A process killed half-way through a checkpoint write, signals and a full disk: test_train_faults.py."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import procs
from effnet.cli import main
from effnet.rundir import RunDir
from effnet.train import checkpoint as ckpt

# a 0.1 M-parameter B0 (phi = -6) on 256 digits: 8 steps of 32 per epoch
TINY = ["--phi", "-6", "--train-subset", "256", "--val-subset", "64", "-b", "32", "--no-progress",
        "--no-tensorboard"]
STEPS_PER_EPOCH = 8


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_cmd(*args):
    return [sys.executable, "-m", "effnet", "train", *TINY, *args]


def _tensors(path: Path) -> dict:
    return load_file(str(path))


def _assert_same(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _pointer(run: Path) -> dict | None:
    try:
        return json.loads((run / "checkpoints" / "LATEST").read_text())
    except (FileNotFoundError, ValueError):
        return None


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    args = ["--epochs", "3", "--ckpt-every-steps", "3", "--deterministic"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    procs.run(_train_cmd(*args, "--output", str(ref)), env=_env(), check=True, timeout=300)

    killed_at = None
    with procs.started(_train_cmd(*args, "--output", str(run)), env=_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            p = _pointer(run)
            # a checkpoint in the second epoch, taken mid-epoch (step 9 or 12 of 8 per epoch)
            if p and p["global_step"] > STEPS_PER_EPOCH and p["global_step"] % STEPS_PER_EPOCH:
                proc.kill()  # SIGKILL: no cleanup, no flush
                killed_at = p
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    assert not (run / "summary.json").exists()  # it really died before finishing

    done = procs.run([sys.executable, "-m", "effnet", "train", "--resume", str(run)], env=_env(),
                     timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    _assert_same(ref / "last.safetensors", run / "last.safetensors")
    _assert_same(ref / "last_ema.safetensors", run / "last_ema.safetensors")
    ref_rows = list(csv.DictReader((ref / "metrics.csv").open()))
    run_rows = list(csv.DictReader((run / "metrics.csv").open()))
    keep = ("epoch", "global_step", "images", "train_loss", "val_loss", "top1", "ema_top1")
    assert [{k: r[k] for k in keep} for r in run_rows] == [{k: r[k] for k in keep} for r in ref_rows]


def test_nonfinite_loss_stops_with_one_line_and_keeps_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", *TINY, "--output", str(run), "--epochs", "2", "--opt", "sgd",
               "--lr", "1e8", "--sched", "constant", "--warmup-epochs", "0",
               "--ckpt-every-steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "NaN/inf" in err[0] and str(run) in err[0]
    state = ckpt.load_state(RunDir(run).latest_checkpoint())
    assert 1 <= state["global_step"] < STEPS_PER_EPOCH
    weights = _tensors(run / "last.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert not (run / "summary.json").exists()
