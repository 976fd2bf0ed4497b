"""A real training run on the built-in digits: it learns, and its run directory is usable by
`effnet eval` and `effnet predict` with nothing but the saved files."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from effnet.cli import main
from effnet.train.checkpoint import load_state


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("quick") / "run"
    torch.set_num_threads(1)
    rc = main(["train", "--epochs", "4", "--output", str(run), "--no-progress",
               "--save-samples", "3"])
    assert rc == 0
    return run


def test_quick_recipe_learns_digits(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    # chance is 10 %; four epochs of the quick recipe (about 20 s on one core) reach ~90 %
    assert summary["best"]["top1"] >= 80.0
    rows = list(csv.DictReader((quick_run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert int(rows[0]["images"]) == 1437 // 64 * 64 and int(rows[0]["global_batch"]) == 64
    assert summary["global_step"] == 4 * (1437 // 64)


def test_run_directory_layout(quick_run):
    for name in ("config.yaml", "spec.json", "metrics.csv", "summary.json", "best.safetensors",
                 "best_ema.safetensors", "last.safetensors", "last_ema.safetensors", "loss.png",
                 "accuracy.png", "lr.png", "checkpoints/LATEST"):
        assert (quick_run / name).is_file(), name
        assert (quick_run / name).stat().st_size > 0
    assert (quick_run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    spec = json.loads((quick_run / "spec.json").read_text())
    assert spec["classes"] == [str(i) for i in range(10)] and spec["num_classes"] == 10
    assert spec["spec"]["preprocess"]["eval_size"] == 32
    # the state file holds only plain data: it loads with weights_only=True
    pointer = json.loads((quick_run / "checkpoints/LATEST").read_text())
    state = load_state(quick_run / "checkpoints" / pointer["dir"])
    assert state["global_step"] == 4 * (1437 // 64) and state["epoch"] == 4
    last = load_file(str(quick_run / "last.safetensors"))
    ckpt_model = load_file(str(quick_run / "checkpoints" / pointer["dir"] / "model.safetensors"))
    assert all(torch.equal(last[k], ckpt_model[k]) for k in last)


def test_eval_command_reproduces_the_logged_accuracy(quick_run, capsys):
    summary = json.loads((quick_run / "summary.json").read_text())
    best = next(r for r in csv.DictReader((quick_run / "metrics.csv").open())
                if int(r["epoch"]) == summary["best"]["epoch"])
    assert main(["eval", "--weights", str(quick_run / "best.safetensors")]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert float(lines["weights"][2]) == pytest.approx(float(best["top1"]), abs=0.01)
    assert float(lines["EMA"][2]) == pytest.approx(float(best["ema_top1"]), abs=0.01)
    assert lines["weights"][-1] == "360"


def test_predict_on_saved_samples(quick_run, capsys):
    samples = sorted((quick_run / "samples").glob("*.png"))
    assert len(samples) == 3
    weights = quick_run / json.loads((quick_run / "summary.json").read_text())["best"]["weights"]
    assert main(["predict", *map(str, samples), "--weights", str(weights), "--topk", "3"]) == 0
    out = capsys.readouterr().out
    for s in samples:
        assert f"{s}:" in out
    assert out.count("  1. ") == 3
