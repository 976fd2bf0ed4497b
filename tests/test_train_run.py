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
    assert spec["classes"] == [str(i) for i in range(10)] and spec["config"]["num_classes"] == 10
    assert spec["config"]["spec"]["preprocess"]["eval_size"] == 32
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


def test_finetune_from_a_run_with_a_new_head(quick_run, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    from effnet.train import build_model
    from effnet.train.presets import get_recipe
    from effnet.train.recipe import override

    digits = load_digits()
    for split, rows in (("train", range(0, 300)), ("val", range(300, 420))):
        for i in rows:
            if digits.target[i] < 3:
                d = tmp_path / "abc" / split / "abc"[digits.target[i]]
                d.mkdir(parents=True, exist_ok=True)
                grey = (digits.images[i] * 255 / 16).astype("uint8")
                Image.fromarray(grey).convert("RGB").save(d / f"{i}.png")
    weights = quick_run / "best.safetensors"
    recipe = override(get_recipe("finetune"), {"model": "efficientnet_b0", "phi": -4,
                                               "img_size": 32})
    model = build_model(recipe, 3, weights=str(weights), adapt=True)
    saved = load_file(str(weights))
    assert torch.equal(model.state_dict()["stem.conv.weight"], saved["stem.conv.weight"])
    assert model.classifier.out_features == 3

    run = tmp_path / "ft"
    rc = main(["train", "--recipe", "finetune", "--model", "efficientnet_b0", "--phi", "-4",
               "--img-size", "32", "--data", str(tmp_path / "abc"), "--weights", str(weights),
               "--adapt", "--steps", "12", "-b", "16", "--grad-accum-steps", "1", "--lr", "1e-3",
               "--warmup-epochs", "0", "--output",
               str(run), "--no-progress"])
    assert rc == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 12 and summary["recipe"] == "finetune"
    # features learnt on ten digits separate three of them (chance: 33 %) within a dozen steps
    # of a new head (~80 % measured)
    assert summary["best"]["top1"] >= 65.0
    assert json.loads((run / "spec.json").read_text())["classes"] == ["a", "b", "c"]


def test_epoch_hooks_can_change_size_and_regularization_between_epochs(tmp_path, capsys):
    """The seam progressive learning needs: a hook changes image size, mixup and dropout."""
    from effnet.train.presets import get_recipe
    from effnet.train.recipe import override
    from effnet.train.trainer import RunOptions, Trainer

    seen = []

    def stage(trainer):
        if trainer.epoch == 1:
            trainer.set_data_stage(24, randaug_magnitude=5, mixup=0.2, cutmix=0.0)
            trainer.set_regularization(dropout=0.3, drop_path=0.1)
        x, _ = trainer.train_seeded[0]
        seen.append((trainer.epoch, tuple(x.shape), trainer.model.head_drop.p,
                     trainer.mixer is not None))

    recipe = override(get_recipe("quick"), {"phi": -6, "batch_size": 32, "epochs": 2})
    t = Trainer(recipe, RunOptions(output=str(tmp_path / "run"), train_subset=128, val_subset=32,
                                   progress=False, tensorboard=False), on_epoch_start=[stage])
    summary = t.run()
    assert seen == [(0, (3, 32, 32), 0.1, False), (1, (3, 24, 24), 0.3, True)]
    assert summary["global_step"] == 8
    assert t.ema.module.head_drop.p == 0.3
    # quick's EMA, 0.97 per step at batch 64, at batch 32: the same horizon in images
    assert t.ema.decay == pytest.approx(0.97**0.5)
    assert "EMA decay 0.97 per step at global batch 64 -> 0.98488578 per step at 32: a horizon " \
        "of 2,117 images" in capsys.readouterr().out
