"""Recipes as data: the presets' values (SPEC D), layering of config files and flags."""

import pytest
import yaml

from effnet.errors import UserError
from effnet.train import recipe_config
from effnet.train.presets import PRESETS, for_model, get_recipe
from effnet.train.recipe import Recipe, override, recipe_from_dict
from effnet.train.recipe_files import read_config


def test_paper_v1_is_the_tpu_recipe():
    r = get_recipe("paper-v1")
    assert (r.opt, r.opt_decay, r.momentum, r.opt_eps) == ("rmsproptf", 0.9, 0.9, 1e-3)
    assert (r.lr, r.lr_base_size, r.warmup_epochs, r.decay_rate, r.decay_epochs, r.sched) == (
        0.016, 256, 5.0, 0.97, 2.4, "step")
    assert (r.weight_decay, r.wd_exclude) == (1e-5, "bn")
    assert (r.ema_decay, r.ema_warmup, r.label_smoothing) == (0.9999, True, 0.1)
    # dropout and stochastic depth: the model's own (0.2 survival drop for every EfficientNet)
    assert (r.bn_momentum, r.bn_eps, r.dropout, r.drop_path) == (0.01, 1e-3, None, None)
    spec = recipe_config(override(r, {"model": "efficientnet_b4"})).spec
    assert spec.dropout == 0.4 and spec.drop_path == 0.2
    # the V1 baselines train as they were published: no stochastic depth
    for baseline in ("resnet50", "mobilenetv2_100"):
        assert recipe_config(override(r, {"model": baseline})).spec.drop_path == 0.0


def test_paper_v2_takes_per_model_augmentation_from_spec_c3():
    r = get_recipe("paper-v2")
    assert r.wd_exclude == "bn_bias"
    m = for_model(override(r, {"model": "efficientnetv2_m"}))
    assert (m.randaug_magnitude, m.mixup, m.cutmix) == (15.0, 0.2, 0.2)
    s = for_model(override(r, {"model": "tf_efficientnetv2_s"}))
    assert (s.randaug_magnitude, s.mixup) == (10.0, 0.0)
    assert for_model(override(r, {"model": "efficientnetv2_l"})).mixup == 0.5


def test_finetune_and_quick():
    f = get_recipe("finetune-paper")
    assert f.steps == 10_000 and f.batch_size * f.grad_accum == 512
    assert f.peak_lr(512) == pytest.approx(0.001) and f.sched == "cosine"
    assert f.weight_decay == 0 and f.cutout and f.scale is None
    # the everyday fine-tune: enough optimiser steps in a short run, a faster new head
    f = get_recipe("finetune")
    assert f.steps == 0 and f.batch_size * f.grad_accum == 32 and f.opt == "adamw"
    assert f.peak_lr(32) == pytest.approx(1e-3) and f.head_lr_scale == 10 and f.ema_decay == 0
    assert (f.dropout, f.drop_path, f.epochs) == (0.0, 0.0, 3)  # a short fine-tune: no regularizers
    assert (f.head_init_scale, f.frozen_stages, f.train_size_ratio) == (0.0, 3, 0.785)
    q = get_recipe("quick")
    assert not q.hflip and q.img_size == 32 and q.epochs * 1437 // 64 < 1000


def test_ema_decay_is_per_step_at_a_stated_global_batch_and_keeps_its_horizon_in_images():
    from effnet.train.report import ema_line

    paper = get_recipe("paper-v1")  # SPEC D.1: 0.9999 per step at global batch 4096
    assert (paper.ema_decay, paper.ema_base_size) == (0.9999, 4096)
    assert paper.ema_step_decay(4096) == 0.9999
    assert paper.ema_step_decay(8192) == pytest.approx(0.9999**2) == pytest.approx(0.99980001)
    assert paper.ema_step_decay(128) == pytest.approx(0.99999687485, abs=1e-11)  # 0.9999 ** (1/32)
    for batch in (128, 512, 4096, 8192):  # the horizon, batch / (1 - decay) images, stays ~41 M
        images = batch / (1 - paper.ema_step_decay(batch))
        assert images == pytest.approx(4096 / (1 - 0.9999), rel=2e-4)
    assert ema_line(paper, 128, 1_281_167) == (
        "EMA decay 0.9999 per step at global batch 4096 -> 0.99999687 per step at 128: "
        "a horizon of 40,958,016 images (32 epochs)")  # 32 ImageNet epochs
    # the small-data presets keep the per-step decay they were tuned with at their own batch
    quick = get_recipe("quick")
    assert quick.ema_step_decay(quick.batch_size) == 0.97
    assert quick.ema_step_decay(128) == pytest.approx(0.97**2)
    assert ema_line(quick, 64, 1437).endswith("a horizon of 2,133 images (1.48 epochs)")
    ft = get_recipe("finetune-paper")
    assert ft.ema_step_decay(ft.batch_size * ft.grad_accum) == 0.9996
    assert ema_line(get_recipe("short"), 64, 1000) == "EMA off"
    # ema_base_size 0: the decay is per step whatever the batch
    per_step = override(paper, {"ema_base_size": 0})
    assert per_step.ema_step_decay(128) == 0.9999
    assert ema_line(per_step, 128, 1000).startswith("EMA decay 0.9999 per step at any global batch")
    with pytest.raises(UserError, match="ema_base_size"):
        override(paper, {"ema_base_size": -1})
    # a run saved before the key existed decayed per step at any batch, and resumes so
    saved = paper.to_dict()
    del saved["ema_base_size"]
    assert recipe_from_dict(saved).ema_base_size == 0


def test_overrides_coerce_strings_and_reject_mistakes():
    r = override(get_recipe("quick"), {"epochs": "3", "scale": "0.5,1", "hflip": "true",
                                       "phi": "none", "lr": 1})
    assert (r.epochs, r.scale, r.hflip, r.phi, r.lr) == (3, (0.5, 1.0), True, None, 1.0)
    with pytest.raises(UserError, match="did you mean 'epochs'"):
        override(r, {"epoch": 3})
    with pytest.raises(UserError, match="batch size must be >= 1"):
        override(r, {"batch_size": 0})
    with pytest.raises(UserError, match="'epochs'"):
        override(r, {"epochs": "many"})
    with pytest.raises(UserError, match="unknown recipe 'paper-v3'"):
        get_recipe("paper-v3")
    with pytest.raises(UserError, match="opt must be one of"):
        Recipe(opt="lamb")


def test_config_file_round_trip(tmp_path):
    r = override(PRESETS["paper-v2"], {"epochs": 7, "mixup": 0.3, "scale": (0.3, 1.0)})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"recipe": r.to_dict(), "runtime": {}}))
    assert recipe_from_dict(read_config(tmp_path / "run.yaml")) == r
    (tmp_path / "flat.yaml").write_text("lr: 0.5\nsched: cosine\n")
    assert override(r, read_config(tmp_path / "flat.yaml")).sched == "cosine"
    (tmp_path / "bad.yaml").write_text("lr: [unclosed\n")
    with pytest.raises(UserError, match="cannot parse"):
        read_config(tmp_path / "bad.yaml")


def test_head_init_scale_scales_a_new_head_and_keeps_a_loaded_one(tmp_path):
    import math

    import torch

    from effnet.train.network import build_model
    from effnet.weights import save_weights

    short = get_recipe("short")
    assert short.head_init_scale == 0.0
    quick = get_recipe("quick")
    model = build_model(quick, num_classes=10)
    bound = 1 / math.sqrt(10)  # the papers' init: uniform +-1/sqrt(classes)
    assert model.classifier.weight.abs().max() <= bound and model.classifier.weight.abs().max() > bound / 2
    assert torch.count_nonzero(build_model(short, num_classes=10).classifier.weight) == 0
    half = build_model(override(quick, {"head_init_scale": 0.5}), num_classes=10)
    assert 0 < half.classifier.weight.abs().max() <= bound / 2
    # a head loaded from weights of the same class count is the loaded one, not scaled
    path = tmp_path / "w.safetensors"
    save_weights(model, path)
    loaded = build_model(short, num_classes=10, weights=str(path))
    torch.testing.assert_close(loaded.classifier.weight, model.classifier.weight)
    # --adapt to another class count starts a new head: scaled
    adapted = build_model(short, num_classes=4, weights=str(path), adapt=True)
    assert adapted.classifier.weight.shape[0] == 4
    assert torch.count_nonzero(adapted.classifier.weight) == 0
    with pytest.raises(UserError, match="head_init_scale"):
        override(quick, {"head_init_scale": -1.0})


def test_presets_for_photos_take_their_sizes_from_the_weights_or_the_model():
    from effnet.train.presets import PRESETS

    for name in ("short", "finetune", "finetune-paper", "paper-v1", "paper-v2"):
        r = get_recipe(name)
        assert r.img_size is None and r.eval_size is None, name
    assert (PRESETS["quick"].img_size, PRESETS["quick"].eval_size) == (32, 32)  # the digits demo


def test_recompute_is_the_recipes_unless_a_flag_says_otherwise():
    """A fine-tune and the small-image presets keep their activations (speed: they fit in memory);
    the papers' recipes recompute them from the convolution outputs (memory); --recompute wins."""
    from effnet.train import RunOptions
    from effnet.train.distributed import World
    from effnet.train.network import run_network

    for name in ("finetune", "quick", "short"):
        assert get_recipe(name).recompute == "off", name
    for name in ("paper-v1", "paper-v2", "finetune-paper"):
        assert get_recipe(name).recompute == "activations", name
    small = override(get_recipe("finetune"), {"model": "efficientnet_b0", "phi": -4})
    world = World()  # one CPU process
    assert run_network(small, RunOptions(), 3, world).recompute == "off"
    assert run_network(small, RunOptions(recompute="blocks"), 3, world).recompute == "blocks"
    with pytest.raises(UserError, match="recompute must be one of"):
        override(small, {"recompute": "everything"})


def test_frozen_stages_is_a_recipe_key_the_network_applies():
    from effnet.train import RunOptions
    from effnet.train.distributed import World
    from effnet.train.network import run_network
    from effnet.train.optim import param_groups

    small = override(get_recipe("finetune"), {"model": "efficientnet_b0", "phi": -4, "frozen_stages": 3})
    model = run_network(small, RunOptions(), 3, World())
    assert model.frozen_stages == 3 and get_recipe("finetune").frozen_stages == 3
    trained = {id(p) for g in param_groups(model, 0.01, "bn_bias", 10.0) for p in g["params"]}
    assert trained == {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(p) in trained for p in model.stages[2].parameters())
    assert all(id(p) in trained for p in model.stages[3].parameters())
    with pytest.raises(UserError, match="frozen_stages 9: efficientnet_b0 has 7 stages"):
        run_network(override(small, {"frozen_stages": 9}), RunOptions(), 3, World())
    with pytest.raises(UserError, match="frozen_stages must be >= 0"):
        override(small, {"frozen_stages": -1})
