"""A resumed run given more epochs keeps the LR curve and the progressive stages it already ran:
no jump back up the cosine, no return to a smaller image size."""

import csv

import pytest

from effnet.train.optim import build_schedule
from effnet.train.options import RunOptions
from effnet.train.presets import get_recipe
from effnet.train.recipe import override
from effnet.train.trainer import Trainer

# quick: AdamW, cosine, 1 warmup epoch; 128 images of 32 = 4 steps per epoch
BASE = {"phi": -6, "batch_size": 32, "progressive": "stages=2,size=16:32,randaug=0:9,dropout=0:0.3"}
OPTS = {"train_subset": 128, "val_subset": 32, "progress": False, "tensorboard": False}


class StopBeforeEpoch(Exception):
    pass


def _trainer(run, epochs, seen, resume=False, stop_at=None) -> Trainer:
    def watch(t):  # runs after the stage hook: the stage's data pipeline is in force
        if t.epoch == stop_at:
            raise StopBeforeEpoch
        seen.append({"epoch": t.epoch, "step": t.global_step, "size": t.train_seeded[0][0].shape[-1],
                     "lr": t.schedule(t.global_step)})

    recipe = override(get_recipe("quick"), {**BASE, "epochs": epochs})
    opts = RunOptions(output=None if resume else str(run), resume=str(run) if resume else None, **OPTS)
    return Trainer(recipe, opts, on_epoch_start=[watch])


def _epoch_lrs(run) -> list[float]:
    with (run / "metrics.csv").open(newline="") as f:
        return [float(r["lr"]) for r in csv.DictReader(f)]


def _check_lengthened(first: Trainer, resumed: Trainer, seen: list[dict], resumed_at: int) -> None:
    s0, end = first.global_step, resumed.total_steps
    assert seen[resumed_at]["step"] == s0
    # the first resumed step takes the LR the shorter run would have used next
    assert resumed.schedule(s0) == first.schedule(s0)
    assert [resumed.schedule(s) for s in range(s0)] == [first.schedule(s) for s in range(s0)]
    # a schedule rebuilt for the new length would have jumped back up the cosine
    naive = build_schedule(resumed.recipe, resumed.peak_lr, resumed.steps_per_epoch, end)
    assert naive(s0) > first.schedule(s0) + 0.1 * resumed.peak_lr
    lrs = [resumed.schedule(s) for s in range(s0, end)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False)), lrs
    warm = resumed.schedule.warmup_steps // resumed.steps_per_epoch
    logged = _epoch_lrs(resumed.run_dir)[warm:]  # the last LR each epoch trained with
    assert all(b <= a for a, b in zip(logged, logged[1:], strict=False)), logged
    sizes = [row["size"] for row in seen]
    assert sizes == sorted(sizes), sizes  # the image size never decreases
    assert resumed.global_step == end


@pytest.mark.slow
def test_finished_run_given_more_epochs_keeps_its_lr_and_stage(tmp_path):
    run, seen = tmp_path / "run", []
    first = _trainer(run, 2, seen)
    first.run()
    resumed = _trainer(run, 4, seen, resume=True)
    resumed.run()
    _check_lengthened(first, resumed, seen, resumed_at=2)
    assert [row["epoch"] for row in seen] == [0, 1, 2, 3]


@pytest.mark.slow
def test_interrupted_run_given_more_epochs_spreads_the_rest(tmp_path):
    run, seen = tmp_path / "run", []
    first = _trainer(run, 4, seen, stop_at=2)  # epochs 1-2 of 4 done: the cosine is half-way
    with pytest.raises(StopBeforeEpoch):
        first.run()
    assert first.schedule(first.global_step) == pytest.approx(0.5 * first.peak_lr)
    resumed = _trainer(run, 8, seen, resume=True)
    resumed.run()
    _check_lengthened(first, resumed, seen, resumed_at=2)
    # epoch 3 of the 4-epoch plan was stage 2 (32 px); rebuilt for 8 epochs it would be stage 1
    assert [row["size"] for row in seen] == [16, 16] + [32] * 6
