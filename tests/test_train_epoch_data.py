"""The data pipeline per epoch (effnet.train.epoch_data): replayable from any batch, one order per
epoch, the stage's transform and mixer, device batches in the requested memory format."""

import torch

from effnet.train.distributed import World
from effnet.train.epoch_data import EpochData, load_splits
from effnet.train.network import recipe_config
from effnet.train.options import RunOptions
from effnet.train.presets import get_recipe
from effnet.train.recipe import override

RECIPE = override(get_recipe("quick"), {"phi": -6, "batch_size": 8})


def _data(channels_last=False) -> EpochData:
    train, _, classes, n = load_splits(RunOptions(train_subset=48, val_subset=8), RECIPE)
    assert (len(train), n, classes[:2]) == (48, 10, ["0", "1"])
    pre = recipe_config(RECIPE).preprocess
    return EpochData(train, pre, RECIPE, n, World(), workers=0, channels_last=channels_last)


def test_a_resumed_epoch_sees_the_same_batches_as_the_uninterrupted_one():
    data = _data()
    full = list(data.batches(epoch=1, skip=0, count=6))
    assert len(full) == 6 and full[0][0].shape == (8, 3, 32, 32) and full[0][1].dtype == torch.int64
    tail = list(data.batches(epoch=1, skip=4, count=6))
    assert len(tail) == 2
    for (xa, ya), (xb, yb) in zip(full[4:], tail, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = list(data.batches(epoch=2, skip=0, count=6))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(full, other, strict=True))


def test_stage_sets_size_and_mixer_and_batches_come_channels_last():
    data = _data(channels_last=True)
    assert data.mixer is None
    data.set_stage(16, randaug_magnitude=5, mixup=0.2, cutmix=0.0)
    torch.manual_seed(0)
    x, y = next(data.batches(epoch=0, skip=0, count=1))
    assert x.shape == (8, 3, 16, 16) and x.is_contiguous(memory_format=torch.channels_last)
    # mixed: soft targets of the mixer, not yet smoothed (the loss smooths)
    assert y.shape == (8, 10) and y.dtype.is_floating_point and torch.allclose(y.sum(1), torch.ones(8))
    assert y.min() == 0
