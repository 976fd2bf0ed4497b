"""One optimisation step (effnet.train.step): accumulation, clipping, the finite checks, and the
one loss path that owns label smoothing."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effnet.data import batch_mixer
from effnet.rundir import RunDir
from effnet.train.distributed import World
from effnet.train.optim import LRSchedule
from effnet.train.step import OptimStep, TrainingDiverged, cross_entropy, smoothed

CONSTANT = LRSchedule("constant", peak=0.5, steps_per_epoch=1, total_steps=10)


def _net(seed: int = 0) -> nn.Module:
    # no BatchNorm: two micro-batches of 8 see the statistics of 16 only without it
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def _step(model, **kw) -> OptimStep:
    return OptimStep(model, torch.optim.SGD(model.parameters(), lr=0.0), CONSTANT, World(), **kw)


def _batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_two_micro_batches_of_8_equal_one_batch_of_16():
    x, y = _batch()
    one, two = _net(), _net()
    s1, s2 = _step(one, label_smoothing=0.1), _step(two, accum=2, label_smoothing=0.1)
    s1.accumulate(x, y)
    assert s1.boundary
    s2.accumulate(x[:8], y[:8])
    assert not s2.boundary
    s2.accumulate(x[8:], y[8:])
    assert s2.boundary
    for a, b in zip(one.parameters(), two.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)
    before = [p.detach().clone() for p in one.parameters()]
    assert s1.update(0) == s2.update(0) == 0.5
    assert not s2.boundary and all(p.grad is None for p in two.parameters())
    for a, b, p0 in zip(one.parameters(), two.parameters(), before, strict=True):
        assert torch.allclose(a, b, atol=1e-6) and not torch.equal(a, p0)


def test_one_micro_batch_of_8_is_not_the_batch_of_16():  # the check above can tell them apart
    x, y = _batch()
    one, half = _net(), _net()
    s1, s2 = _step(one), _step(half)
    s1.accumulate(x, y)
    s2.accumulate(x[:8], y[:8])
    assert not all(torch.allclose(a.grad, b.grad, atol=1e-6)
                   for a, b in zip(one.parameters(), half.parameters(), strict=True))


def test_clip_bounds_the_update_to_lr_times_max_norm():
    x, y = _batch()
    moved = {}
    for clip in (0.0, 1e-3):
        model = _net()
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        step = _step(model, clip_grad=clip)
        step.accumulate(x, y)
        step.update(0)
        moved[clip] = float((torch.cat([p.detach().flatten() for p in model.parameters()])
                             - before).norm())
    assert moved[1e-3] == pytest.approx(0.5 * 1e-3, rel=1e-4)  # SGD: lr x the clipped norm
    assert moved[0.0] > 10 * moved[1e-3]


def test_nan_loss_raises_training_diverged(tmp_path):
    model = _net()
    step = _step(model)
    x, y = _batch()
    step.accumulate(x, y)
    step.update(0)
    step.check_finite(RunDir(tmp_path), epoch=0, step=1, params=True)  # all numbers: no error
    x[3, 0, 0, 0] = float("nan")
    step.accumulate(x, y)
    with pytest.raises(TrainingDiverged, match="NaN/inf at epoch 1, step 2.*no checkpoint"):
        step.check_finite(RunDir(tmp_path), epoch=0, step=2)


def test_nan_weights_are_caught_by_the_params_check(tmp_path):
    model = _net()
    step = _step(model)
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("inf")
    step.check_finite(RunDir(tmp_path), epoch=0, step=0)  # no loss seen yet: nothing to report
    with pytest.raises(TrainingDiverged):
        step.check_finite(RunDir(tmp_path), epoch=0, step=0, params=True)


def test_label_smoothing_is_applied_once_for_soft_and_hard_targets():
    torch.manual_seed(0)
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    xm, t = batch_mixer(7, mixup_alpha=0.4)(x, y)
    assert t[:, 6].eq(0).all()  # the mixer only mixes: class 6 is in no image, its target is 0
    ts = smoothed(t, 0.1)
    assert torch.allclose(ts.sum(1), torch.ones(6)) and ts.min() >= 0.1 / 7 - 1e-7
    logits = torch.randn(6, 7)
    expected = -(ts * F.log_softmax(logits, -1)).sum(1).mean()
    assert torch.allclose(cross_entropy(logits, t, 0.1), expected)
    # int labels take torch's smoothing, which is the same as smoothing their one-hot targets
    hard = cross_entropy(logits, y, 0.1)
    assert torch.allclose(hard, cross_entropy(logits, F.one_hot(y, 7).float(), 0.1), atol=1e-6)
    assert not torch.allclose(hard, cross_entropy(logits, y))
