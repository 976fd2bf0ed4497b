"""RMSpropTF against TF1's update rule, the TF learning-rate schedule, TF's EMA, weight-decay groups."""

import math

import pytest
import torch
from torch import nn

from effnet.arch.scaling import scale_compound
from effnet.models import build, get_spec
from effnet.train.ema import ModelEma, tf_decay
from effnet.train.optim import LRSchedule, RMSpropTF, build_optimizer, param_groups
from effnet.train.presets import PRESETS


def test_rmsproptf_first_step_by_hand():
    # w = 1, g = 0.5, lr = 0.1, rho = mu = 0.9, eps = 1e-3, TF1 semantics (SPEC D.1):
    # ms = 0.9 * 1 + 0.1 * 0.25 = 0.925; mom = 0.1 * 0.5 / sqrt(0.926) = 0.05195945; w = 0.94804055
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = RMSpropTF([w], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    w.grad = torch.tensor([0.5], dtype=torch.float64)
    opt.step()
    assert w.item() == pytest.approx(1 - 0.1 * 0.5 / math.sqrt(0.926), abs=1e-12)
    assert w.item() == pytest.approx(0.94804055, abs=1e-8)
    # torch.optim.RMSprop: v = 0.025, buf = 0.5 / (sqrt(0.025) + 1e-3) = 3.1424, w = 1 - 0.31424
    v = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    ref = torch.optim.RMSprop([v], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    v.grad = torch.tensor([0.5], dtype=torch.float64)
    ref.step()
    assert v.item() == pytest.approx(1 - 0.1 * 0.5 / (math.sqrt(0.025) + 1e-3), abs=1e-12)
    assert abs(v.item() - w.item()) > 0.25


def test_rmsproptf_matches_tf1_over_steps_with_changing_lr():
    grads = [[0.5, -2.0, 0.0], [0.1, 1.0, -3.0], [-0.4, 0.3, 2.0], [1.5, -0.2, 0.7]]
    lrs = [0.1, 0.05, 0.2, 0.2]  # LR changes, where folding it into momentum matters
    rho, mu, eps, wd = 0.9, 0.9, 1e-3, 1e-2
    w0 = [1.0, -0.5, 2.0]

    # the TF1 ApplyRMSProp update written out per coordinate, plus an L2 term wd * w in the gradient
    ref_w, ms, mom = list(w0), [1.0] * 3, [0.0] * 3
    for g, lr in zip(grads, lrs, strict=True):
        for i in range(3):
            gi = g[i] + wd * ref_w[i]
            ms[i] = rho * ms[i] + (1 - rho) * gi * gi
            mom[i] = mu * mom[i] + lr * gi / math.sqrt(ms[i] + eps)
            ref_w[i] -= mom[i]

    def run(make):
        p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
        opt = make([p])
        for g, lr in zip(grads, lrs, strict=True):
            for group in opt.param_groups:
                group["lr"] = lr
            p.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
        return p.detach().tolist()

    ours = run(lambda ps: RMSpropTF(ps, lr=0.1, alpha=rho, eps=eps, momentum=mu, weight_decay=wd))
    assert ours == pytest.approx(ref_w, abs=1e-12)
    stock = run(lambda ps: torch.optim.RMSprop(ps, lr=0.1, alpha=rho, eps=eps, momentum=mu,
                                               weight_decay=wd))
    assert max(abs(a - b) for a, b in zip(stock, ref_w, strict=True)) > 0.1


def test_lr_schedule_tf_warmup_and_staircase_from_step_zero():
    s = LRSchedule("step", peak=0.256, steps_per_epoch=10, total_steps=1000, warmup_steps=50,
                   decay_rate=0.97, decay_epochs=2.4)
    assert s(0) == 0.0  # TF's first update uses step 0 of the warmup
    assert s(25) == pytest.approx(0.128)
    assert s(49) == pytest.approx(0.256 * 49 / 50)
    # the decay ran during warmup (decay steps = 24): at step 50, floor(50/24) = 2 decays
    assert s(50) == pytest.approx(0.256 * 0.97**2)
    assert s(71) == pytest.approx(0.256 * 0.97**2)
    assert s(72) == pytest.approx(0.256 * 0.97**3)
    c = LRSchedule("cosine", peak=1.0, steps_per_epoch=10, total_steps=100, warmup_steps=0)
    assert [c(0), c(50), c(100)] == pytest.approx([1.0, 0.5, 0.0])
    k = LRSchedule("constant", peak=0.001, steps_per_epoch=10, total_steps=100, warmup_steps=10)
    assert [k(5), k(10), k(99)] == pytest.approx([0.0005, 0.001, 0.001])


def test_ema_uses_tf_decay_and_averages_bn_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    w0 = model[0].weight.detach().clone()
    ema = ModelEma(model, decay=0.9999)
    expected_w, expected_mean = w0.clone(), torch.zeros(3)
    for t in (1, 2, 3):
        with torch.no_grad():
            model[0].weight.add_(0.5)
        model(torch.randn(8, 4))  # updates running_mean
        ema.update_parameters(model)
        d = min(0.9999, (1 + t) / (10 + t))
        expected_w = d * expected_w + (1 - d) * model[0].weight.detach()
        expected_mean = d * expected_mean + (1 - d) * model[1].running_mean
    assert torch.allclose(ema.module[0].weight, expected_w, atol=1e-6)
    assert torch.allclose(ema.module[1].running_mean, expected_mean, atol=1e-6)
    assert not torch.allclose(ema.module[1].running_mean, model[1].running_mean)
    assert int(ema.module[1].num_batches_tracked) == 3  # a counter is copied, not averaged
    assert tf_decay(0.9999, 1_000_000) == 0.9999 and tf_decay(0.9999, 0) == pytest.approx(0.1)


def _small_model():
    return build(scale_compound(get_spec("efficientnet_b0"), -6)[0], num_classes=5)


def test_weight_decay_groups_v1_decays_biases_v2_does_not():
    model = _small_model()
    bn = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    biases = {id(p) for n, p in model.named_parameters() if n.endswith(".bias") and id(p) not in bn}
    assert biases  # SE convs and the classifier have biases

    v1 = param_groups(model, 1e-5, "bn")
    decayed = {id(p) for g in v1 if g["weight_decay"] > 0 for p in g["params"]}
    assert biases <= decayed and not bn & decayed
    v2 = param_groups(model, 1e-5, "bn_bias")
    decayed2 = {id(p) for g in v2 if g["weight_decay"] > 0 for p in g["params"]}
    assert not biases & decayed2 and not bn & decayed2
    assert len(decayed2) + len(biases) + len(bn) == len(list(model.parameters()))


def test_paper_recipe_builds_rmsproptf_with_linear_lr_scaling():
    r = PRESETS["paper-v1"]
    assert r.peak_lr(4096) == pytest.approx(0.256) and r.peak_lr(256) == pytest.approx(0.016)
    opt = build_optimizer(_small_model(), r, r.peak_lr(512))
    assert isinstance(opt, RMSpropTF)
    g = opt.param_groups[0]
    assert (g["lr"], g["alpha"], g["eps"], g["momentum"], g["weight_decay"]) == pytest.approx(
        (0.032, 0.9, 1e-3, 0.9, 1e-5))
