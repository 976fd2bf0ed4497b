"""Progressive learning inside the trainer: stages change size, RandAugment and dropout at the
boundary, weights carry over, and a resumed run continues in the right stage."""

import csv

import pytest
import torch

from effnet.cli import main
from effnet.rundir import STAGES_FILE
from effnet.train.presets import get_recipe
from effnet.train.recipe import override
from effnet.train.trainer import RunOptions, train

PLAN = "stages=2,size=16:32,randaug=0:9,dropout=0:0.3"


class StopBeforeEpoch(Exception):
    pass


def recipe():
    return override(get_recipe("quick"), {"epochs": 4, "progressive": PLAN})


def read_stages(run):
    with (run / STAGES_FILE).open(newline="") as f:
        return list(csv.DictReader(f))


def test_two_stages_change_size_randaug_dropout_and_keep_weights(tmp_path):
    seen = {}

    def watch(trainer):  # runs after the stage hook, i.e. with the stage's settings in force
        image, _ = trainer.train_data[0]
        seen[trainer.epoch] = {
            "image_px": image.shape[-1],
            "dropout": trainer.model.head_drop.p,
            "params": [p for p in trainer.model.parameters()],
            "values": [p.detach().clone() for p in trainer.model.parameters()],
        }

    run = tmp_path / "run"
    train(recipe(), RunOptions(output=str(run), train_subset=256, progress=False, tensorboard=False),
          on_epoch_start=[watch])
    rows = read_stages(run)
    assert [(r["stage"], r["size"], r["randaug"], r["dropout"]) for r in rows] == [
        ("1", "16", "0", "0"), ("1", "16", "0", "0"), ("2", "32", "9", "0.3"), ("2", "32", "9", "0.3")]
    # what the model and the data pipeline really saw
    assert [seen[e]["image_px"] for e in range(4)] == [16, 16, 32, 32]
    assert [seen[e]["dropout"] for e in range(4)] == [0.0, 0.0, 0.3, 0.3]
    # no re-initialisation at the boundary: the same parameter objects, trained on from stage 1
    assert all(a is b for a, b in zip(seen[1]["params"], seen[2]["params"], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(seen[0]["values"], seen[2]["values"], strict=True))


def test_stage_pipeline_holds_the_stage_randaugment(tmp_path):
    mags = {}

    def watch(trainer):
        ops = [t for t in trainer.train_data.transform.transforms if type(t).__name__ == "RandAugmentM"]
        mags[trainer.epoch] = ops[0].m if ops else None

    train(recipe(), RunOptions(output=str(tmp_path / "r"), train_subset=128, progress=False,
                               tensorboard=False), on_epoch_start=[watch])
    assert mags == {0: None, 1: None, 2: 9.0, 3: 9.0}


def test_resume_inside_stage_two_continues_in_stage_two(tmp_path, capsys):
    run = tmp_path / "run"

    def stop(trainer):
        if trainer.epoch == 3:  # epochs 1-3 done and checkpointed; epoch 4 is stage 2
            raise StopBeforeEpoch

    with pytest.raises(StopBeforeEpoch):
        train(recipe(), RunOptions(output=str(run), train_subset=128, progress=False, tensorboard=False),
              on_epoch_start=[stop])
    assert [r["epoch"] for r in read_stages(run)] == ["1", "2", "3", "4"]  # epoch 4 logged, not run
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "progressive stage 2/2: size 32px" in out and "stage 1/2" not in out
    rows = read_stages(run)
    assert [(r["epoch"], r["stage"], r["size"]) for r in rows][-1] == ("4", "2", "32")
    with (run / "metrics.csv").open(newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3", "4"]


def test_bad_schedule_is_one_line(capsys, tmp_path):
    assert main(["train", "--progressive", "v2-q", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown progressive schedule 'v2-q'" in err and len(err.strip().splitlines()) == 1
