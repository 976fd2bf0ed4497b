"""Model names (timm's), `create_model` and `list_models`.

A model name may also be the path of a JSON file holding a model config or a bare spec (a run's
spec.json, a searched architecture's best.json): `create_model("best.json")` builds it.

`efficientnet_*` models use PyTorch conventions (symmetric padding, BN eps 1e-5, momentum 0.1), as
timm's and torchvision's PyTorch-trained weights expect; `tf_efficientnet*` models use TensorFlow
"same" padding and BN eps 1e-3 / momentum 0.01, for weights trained in TensorFlow.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import replace
from pathlib import Path

from .arch.config import ModelConfig, read_config_file
from .arch.spec import IMAGENET_MEAN, IMAGENET_STD, NetSpec
from .arch.zoo import VARIANTS
from .errors import UserError
from .nn.layers import TF_NORM, NormConfig
from .nn.model import EfficientNet

TF_PREFIX = "tf_"


def _torch_preprocess(spec: NetSpec) -> NetSpec:
    # PyTorch-trained V2 weights (timm) use ImageNet statistics
    if spec.name.startswith("efficientnetv2"):
        return spec.with_(preprocess=replace(spec.preprocess, mean=IMAGENET_MEAN, std=IMAGENET_STD))
    return spec


def model_names() -> list[str]:
    plain = list(VARIANTS)
    # TF-trained weights exist for the EfficientNet family only
    return plain + [TF_PREFIX + n for n in plain if n.startswith("efficientnet")]


def list_models(pattern: str = "*") -> list[str]:
    """Names matching a shell-style pattern, e.g. `list_models("*lite*")`."""
    return [n for n in model_names() if fnmatch.fnmatch(n, pattern)]


def is_config_file(name: str) -> bool:
    return str(name).lower().endswith(".json")


def load_config_file(path: str) -> ModelConfig:
    """The config in a JSON file (see `effnet.arch.config.read_config_file`), or one error line."""
    if not Path(path).is_file():
        raise UserError(f"no such model file: {path}")
    try:
        return read_config_file(path)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not an effnet model config or spec ({e})") from None


def resolve(name: str) -> tuple[NetSpec, bool]:
    """The spec behind a model name (or config file) and whether it is a TF-style model."""
    if is_config_file(name):
        config = load_config_file(name)
        return config.spec, config.tf_padding
    tf = name.startswith(TF_PREFIX)
    base = name[len(TF_PREFIX):] if tf else name
    if name not in model_names():
        close = difflib.get_close_matches(name, model_names(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `effnet models`"
        raise UserError(f"unknown model {name!r}{hint}")
    spec = VARIANTS[base]
    # tf_ names keep the zoo's TF preprocessing: V2-S/M/L/XL (x - 0.5) / 0.5 (SPEC C.7), V2-B0..B3
    # ImageNet statistics (V1's legacy pipeline), Lite mean = std = 0.5
    spec = spec if tf else _torch_preprocess(spec)
    return spec.with_(name=name), tf


def model_config(name: str, num_classes: int | None = None, in_chans: int | None = None,
                 bn_eps: float | None = None, bn_momentum: float | None = None) -> ModelConfig:
    """The config of a named model (PyTorch or TF conventions by its name) or of a config file,
    with the given fields changed."""
    if is_config_file(name):
        config = load_config_file(name)
    else:
        spec, tf = resolve(name)
        norm = TF_NORM if tf else NormConfig()
        config = ModelConfig(spec, bn_eps=norm.eps, bn_momentum=norm.momentum, tf_padding=tf)
    changes = {"num_classes": num_classes, "in_chans": in_chans, "bn_eps": bn_eps,
               "bn_momentum": bn_momentum}
    try:
        return config.with_(**{k: v for k, v in changes.items() if v is not None})
    except ValueError as e:
        raise UserError(str(e)) from None


def named_config(name: str) -> ModelConfig:
    """The config `create_model(name)` starts from; a tagged name ("efficientnet_b0.ra_in1k")
    is its pretrained row's model."""
    row = _pretrained_row(name, False)
    return model_config(row.model if row is not None else name)


def get_spec(name: str) -> NetSpec:
    return resolve(name)[0]


def build(spec: NetSpec, num_classes: int = 1000, in_chans: int = 3, tf: bool = False,
          **overrides) -> EfficientNet:
    """Build any spec (a zoo variant, a scaled spec, a searched one)."""
    norm = TF_NORM if tf else NormConfig()
    if "bn_eps" in overrides or "bn_momentum" in overrides:
        norm = NormConfig(eps=overrides.pop("bn_eps", norm.eps),
                          momentum=overrides.pop("bn_momentum", norm.momentum))
    tf_padding = overrides.pop("tf_padding", tf)
    return EfficientNet(spec, num_classes=num_classes, in_chans=in_chans, norm=norm,
                        tf_padding=tf_padding, **overrides)


def _pretrained_row(name: str, pretrained: bool | str):
    """The pretrained row create_model follows: the tag in `pretrained` or in the name
    ("efficientnet_b0.ra_in1k", as timm: without pretrained=True only its preprocessing is used),
    or the model's default row for pretrained=True."""
    if not pretrained and ("." not in name or is_config_file(name)):
        return None
    from .pretrained import find_pretrained

    row = find_pretrained(pretrained if isinstance(pretrained, str) else name)
    if name not in (row.tag, row.model, row.arch):
        raise UserError(f"pretrained weights {row.tag} are for {row.model}, not {name}")
    return row


def create_model(name: str, num_classes: int | None = None, in_chans: int | None = None,
                 weights=None, adapt: bool = False, pretrained: bool | str = False,
                 **overrides) -> EfficientNet:
    """Build a named model (or the model a config/spec JSON file describes); `weights` (a
    .pth/.safetensors path or a state dict from effnet, timm, torchvision or lukemelas) are loaded
    with their key map detected automatically.

    `pretrained=True` loads the model's default published weights, `pretrained="arch.tag"` a
    given row of `effnet models --pretrained`, and sets the model's preprocessing (and BN eps) to
    the ones those weights were trained with; a tagged name ("efficientnet_b0.ra_in1k") selects the
    row too, as in timm. As in timm, a class count or in_chans other than the weights' starts a new
    classifier / adapts the first conv.

    num_classes / in_chans default to the weights' or the config's (1000 / 3 for a zoo name).
    overrides: drop_rate, drop_path_rate, bn_eps, bn_momentum, tf_padding.
    `adapt=True` resets a classifier of another class count and adapts the first conv to
    `in_chans` instead of failing on the mismatch.
    """
    row = _pretrained_row(name, pretrained)
    if row is not None:
        name = row.model
        if pretrained:
            if weights is not None:
                raise UserError("give either weights or pretrained, not both")
            from .pretrained import resolve_pretrained

            weights = resolve_pretrained(row)[1]
            adapt = True
        if num_classes is None:
            num_classes = row.num_classes
        if row.bn_eps is not None:
            overrides.setdefault("bn_eps", row.bn_eps)
    config = model_config(name, num_classes, in_chans, overrides.pop("bn_eps", None),
                          overrides.pop("bn_momentum", None))
    if row is not None:  # preprocessing travels with the weights
        config = config.with_(spec=config.spec.with_(preprocess=row.preprocess))
    if "tf_padding" in overrides:
        config = config.with_(tf_padding=bool(overrides.pop("tf_padding")))
    model = EfficientNet.from_config(config, **overrides)
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights, adapt=adapt)
    return model
