"""The train state a checkpoint holds (effnet.train.state) and the plans a resumed run of another
length follows (effnet.train.plan)."""

import pytest
import torch

from effnet.errors import UserError
from effnet.train import checkpoint as ckpt
from effnet.train.distributed import World
from effnet.train.optim import LRSchedule
from effnet.train.plan import Progress
from effnet.train.state import STATE_VERSION, TrainState, resumed_plans


def _state() -> TrainState:
    return TrainState(
        epoch=3, batch_in_epoch=4, global_step=28, history=[{"epoch": 1, "top1": 12.5}],
        best={"top1": 12.5, "epoch": 1, "weights": "best.safetensors"}, train_time=7.25,
        epoch_sums=(3.5, 128), step_plan=Progress.of(40).replanned(28, 80),
        epoch_plan=Progress.of(5).replanned(4, 10), optimizer={"state": {}, "param_groups": []},
        scaler={}, ema_updates=28, rng=[ckpt.rng_state()], world_size=1,
        recipe={"epochs": 10, "seed": 0})


def test_round_trip_through_a_weights_only_file(tmp_path):
    st = _state()
    ckpt.save_torch_state(st.to_dict(), tmp_path / "state.pt")
    back = TrainState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(back.rng[0]["torch"], st.rng[0]["torch"])
    back.rng, st.rng = [], []
    assert back == st
    assert back.step_plan.segments == ((0, 0.0, 40), (28, 0.7, 80))


def test_refuses_a_newer_version_and_a_foreign_dict():
    d = _state().to_dict()
    assert d["version"] == STATE_VERSION
    with pytest.raises(UserError, match="state version 99"):
        TrainState.from_dict({**d, "version": 99})
    with pytest.raises(UserError, match="not an effnet training state"):
        TrainState.from_dict({**d, "format": "something-else"})


def test_version_1_state_takes_the_plan_of_its_recipe():
    d = _state().to_dict()
    del d["plan"]
    v1 = TrainState.from_dict({**d, "version": 1})
    assert v1.step_plan is None
    steps, epochs = resumed_plans(v1, 8, 80, 10, World(), cosine=True)
    assert steps == Progress.of(80) and epochs == Progress.of(10)  # same length: one plan
    v1.recipe = {"epochs": 5, "steps": None}
    steps, epochs = resumed_plans(v1, 8, 80, 10, World(), cosine=True)
    assert steps.segments == ((0, 0.0, 40), (28, 0.7, 80))
    # the epoch in progress (batch 4 of epoch 4) keeps its stage: the new plan starts after it
    assert epochs.segments == ((0, 0.0, 5), (4, 0.8, 10))


def test_unchanged_length_is_exactly_step_over_total():
    p = Progress.of(37)
    assert p.replanned(20, 37) is p
    assert [p(s) for s in range(40)] == [min(s / 37, 1.0) for s in range(40)]


def test_lengthened_cosine_continues_from_the_lr_reached():
    old = LRSchedule("cosine", peak=1.0, steps_per_epoch=10, total_steps=100, warmup_steps=5)
    new = LRSchedule("cosine", peak=1.0, steps_per_epoch=10, total_steps=300, warmup_steps=5,
                     progress=Progress.of(100).replanned(60, 300))
    assert [new(s) for s in range(61)] == [old(s) for s in range(61)]  # the steps taken stay
    lrs = [new(s) for s in range(60, 301)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert old(61) < new(61) < new(60)  # the rest of the cosine, spread over more steps
    assert new.curve()[:60] == old.curve()[:60]


def test_a_plan_changed_twice_never_goes_back():
    p = Progress.of(10).replanned(6, 20).replanned(12, 15)
    fractions = [p(x) for x in range(16)]
    assert fractions[:7] == [x / 10 for x in range(7)]
    assert all(b >= a for a, b in zip(fractions, fractions[1:], strict=False))
    assert fractions[-1] == 1.0
