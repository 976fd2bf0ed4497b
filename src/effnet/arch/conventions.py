"""Model names and the conventions a name implies, decided here and nowhere else.

`efficientnet_*` names use PyTorch conventions (symmetric padding, BN eps 1e-5, momentum 0.1), as
timm's and torchvision's PyTorch-trained weights expect; `tf_efficientnet*` names use TensorFlow
"same" padding and BN eps 1e-3 / momentum 0.01, for weights trained in TensorFlow (SPEC G.1). The
preprocessing of a name (its architecture default, see effnet.data.config) follows the same rule:
tf_ names keep the papers' (arch/zoo.py: V2-S/M/L/XL (x - 0.5) / 0.5, V2-B0..B3 ImageNet
statistics, Lite mean = std = 0.5); PyTorch-trained V2 weights (timm) use ImageNet statistics.
"""

from __future__ import annotations

from dataclasses import replace

from .config import TF_BN_EPS, TF_BN_MOMENTUM, ModelConfig
from .preprocess import DEFAULT_PREPROCESS, IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .spec import NetSpec
from .zoo import PREPROCESS, VARIANTS

TF_PREFIX = "tf_"


def model_names() -> list[str]:
    plain = list(VARIANTS)
    # TF-trained weights exist for the EfficientNet family only
    return plain + [TF_PREFIX + n for n in plain if n.startswith("efficientnet")]


def is_tf_name(name: str) -> bool:
    return name.startswith(TF_PREFIX)


def default_preprocess(name: str) -> Preprocess:
    """The architecture default of a model name's data config (unknown names, such as a scaled or
    searched spec's: ImageNet statistics at 224 px)."""
    tf = is_tf_name(name)
    base = name.removeprefix(TF_PREFIX) if tf else name
    pre = PREPROCESS.get(base, DEFAULT_PREPROCESS)
    if not tf and base.startswith("efficientnetv2"):
        return replace(pre, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return pre


def conventions_config(spec: NetSpec, tf: bool) -> ModelConfig:
    """A config for `spec` with TensorFlow or PyTorch padding and BatchNorm settings."""
    if tf:
        return ModelConfig(spec, bn_eps=TF_BN_EPS, bn_momentum=TF_BN_MOMENTUM, tf_padding=True)
    return ModelConfig(spec)


def zoo_config(name: str) -> ModelConfig:
    """The config of a model name of `model_names()`: its variant's spec (named as asked) and the
    conventions of the name; no preprocessing, as no weights are known yet (the resolver gives
    the name's default). KeyError for another name."""
    if name not in model_names():
        raise KeyError(name)
    tf = is_tf_name(name)
    spec = VARIANTS[name.removeprefix(TF_PREFIX) if tf else name].with_(name=name)
    return conventions_config(spec, tf)
