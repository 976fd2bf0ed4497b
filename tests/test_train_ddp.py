"""Two CPU processes under torchrun (gloo): one model, one global batch."""

import csv
import json
import os
import subprocess
import sys

import pytest

from effnet.train.trainer import _state_hash


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "effnet", "train", "--phi", "-6", "--train-subset", "256",
           "--val-subset", "101", "-b", "16", "--epochs", "2", "--no-progress", "--no-tensorboard",
           "--output", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch 2/2") == 1  # only rank 0 reports

    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 32
    hashes = summary["rank_state_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # both ranks hold the same weights and BN

    from effnet.inference import load_for_inference

    model, _ = load_for_inference(None, run / "last.safetensors")
    assert _state_hash(model) == hashes[0]  # ... and they are the saved ones

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    # 256 images / (16 per rank x 2 ranks) = 8 steps; the logged count is the sum over ranks
    assert [int(r["global_step"]) for r in rows] == [8, 16]
    assert all(int(r["images"]) == 256 and int(r["global_batch"]) == 32 for r in rows)
    # val is sharded without padding (51 + 50 images): top-1 is a count out of exactly 101
    for r in rows:
        correct = float(r["top1"]) * 101 / 100
        assert correct == pytest.approx(round(correct), abs=1e-3)
