"""The data config: preprocessing belongs to the weights, not the architecture, and one resolver
applies it with the precedence flag > recipe > weights > architecture default, rule by rule."""

import pytest

import effnet
from effnet.arch.config import ModelConfig
from effnet.arch.conventions import default_preprocess, zoo_config
from effnet.arch.preprocess import DEFAULT_PREPROCESS, HALF, IMAGENET_MEAN, Preprocess
from effnet.arch.scaling import scale, scale_compound
from effnet.data.config import DataOverrides, resolve_data_config
from effnet.models import plan_model
from effnet.pretrained import find_pretrained

# published Lite0 weights: bicubic and 224 px where the architecture default (TF's) is bilinear
WEIGHTS = Preprocess(224, 224, crop_pct=0.875, interpolation="bicubic", mean=HALF, std=HALF)
LITE0 = zoo_config("tf_efficientnet_lite0")


def test_a_flag_beats_the_recipe():
    pre = resolve_data_config(LITE0.with_(preprocess=WEIGHTS), recipe=DataOverrides(eval_size=64),
                              flags=DataOverrides(eval_size=96))
    assert pre.eval_size == 96
    # a flag's train size also beats the recipe's ratio of the eval size
    pre = resolve_data_config(LITE0, recipe=DataOverrides(train_size_ratio=0.5),
                              flags=DataOverrides(train_size=100))
    assert pre.train_size == 100


def test_the_recipe_beats_the_weights():
    pre = resolve_data_config(LITE0.with_(preprocess=WEIGHTS),
                              recipe=DataOverrides(train_size=48, eval_size=64))
    assert (pre.train_size, pre.eval_size) == (48, 64)
    assert (pre.interpolation, pre.mean) == ("bicubic", HALF)  # what the recipe leaves: the weights'
    # a recipe's ratio trains below the eval size the weights (or a higher source) give
    pre = resolve_data_config(LITE0.with_(preprocess=WEIGHTS), recipe=DataOverrides(train_size_ratio=0.875))
    assert (pre.train_size, pre.eval_size) == (196, 224)


def test_the_weights_beat_the_architecture_default():
    assert default_preprocess("tf_efficientnet_lite0").interpolation == "bilinear"
    assert resolve_data_config(LITE0.with_(preprocess=WEIGHTS)) == WEIGHTS
    # and a given default (a scaled network's) too
    assert resolve_data_config(LITE0.with_(preprocess=WEIGHTS), default=DEFAULT_PREPROCESS) == WEIGHTS


def test_the_architecture_default_applies_when_nothing_else_is_given():
    assert LITE0.preprocess is None  # a name alone carries no weights
    assert resolve_data_config(LITE0) == default_preprocess("tf_efficientnet_lite0")
    # tf_ names keep the paper's statistics, PyTorch-trained V2 weights use ImageNet's
    assert resolve_data_config(zoo_config("tf_efficientnetv2_s")).mean == HALF
    assert resolve_data_config(zoo_config("efficientnetv2_s")).mean == IMAGENET_MEAN
    # a spec of no known name: ImageNet at 224 px, or the default its caller knows
    searched = ModelConfig(effnet.get_spec("efficientnet_b0").with_(name="searched"))
    assert resolve_data_config(searched) == DEFAULT_PREPROCESS
    assert resolve_data_config(searched, default=WEIGHTS) == WEIGHTS


def test_scaling_leaves_preprocessing_alone_and_returns_the_size():
    spec = effnet.get_spec("efficientnetv2_b0")
    assert not hasattr(spec, "preprocess")
    scaled, m = scale_compound(spec, 1.0)
    assert not hasattr(scaled, "preprocess") and m.scaled_size(224) == 258
    assert not hasattr(scale(spec, width=1.2), "preprocess")
    # the factory gives a scaled network its base's default at the scaled size, ratio kept
    pre = plan_model("efficientnetv2_b0", phi=1.0).config.preprocess
    assert (pre.train_size, pre.eval_size) == (round(258 * 192 / 224), 258)
    with pytest.raises(ValueError, match="too large to build"):
        scale_compound(spec, 60.0)[1].scaled_size(224)


def test_the_factory_records_what_the_weights_expect():
    tagged = effnet.create_model("tf_efficientnet_lite0.in1k")  # timm: a tag sets preprocessing
    assert tagged.config.preprocess == find_pretrained("tf_efficientnet_lite0.in1k").preprocess
    assert resolve_data_config(tagged).interpolation == "bicubic"
    plain = effnet.create_model("tf_efficientnet_lite0")
    assert plain.config.preprocess == default_preprocess("tf_efficientnet_lite0")
    # a recipe's sizes go into the config, so a run's spec.json rebuilds them
    recipe = plan_model("tf_efficientnet_lite0.in1k", data=DataOverrides(train_size=64, eval_size=64))
    assert (recipe.config.preprocess.eval_size, recipe.config.preprocess.interpolation) == (64, "bicubic")


def test_an_effnet_file_brings_its_preprocessing_and_classes(tmp_path):
    from effnet.weights import save_weights

    trained = effnet.make_model("efficientnet_b0", num_classes=3,
                                data=DataOverrides(train_size=96, eval_size=128))
    path = save_weights(trained, tmp_path / "w.safetensors")
    loaded = effnet.create_model("efficientnet_b0", weights=path)
    assert loaded.num_classes == 3 and loaded.config.preprocess.eval_size == 128
