"""Model names (timm's), `create_model` and `list_models`.

`efficientnet_*` models use PyTorch conventions (symmetric padding, BN eps 1e-5, momentum 0.1), as
timm's and torchvision's PyTorch-trained weights expect; `tf_efficientnet*` models use TensorFlow
"same" padding and BN eps 1e-3 / momentum 0.01, for weights trained in TensorFlow.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import replace

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


def resolve(name: str) -> tuple[NetSpec, bool]:
    """The spec behind a model name and whether it is a TF-style model."""
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


def create_model(name: str, num_classes: int | None = None, in_chans: int = 3, weights=None,
                 adapt: bool = False, pretrained: bool | str = False, **overrides) -> EfficientNet:
    """Build a named model; `weights` (a .pth/.safetensors path or a state dict from effnet,
    timm, torchvision or lukemelas) are loaded with their key map detected automatically.

    `pretrained=True` loads the model's default published weights, `pretrained="arch.tag"` a
    given row of `effnet models --pretrained`, and sets the model's preprocessing (and BN eps) to
    the ones those weights were trained with; a tagged name ("efficientnet_b0.ra_in1k") selects the
    row too, as in timm.
    As in timm, a class count or in_chans other than the weights' starts a new classifier / adapts
    the first conv. num_classes defaults to the weights' (else 1000).

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
            adapt = True  # as timm: another class count / in_chans starts a new head / adapts
    if num_classes is None:
        num_classes = row.num_classes if row is not None else 1000
    if num_classes < 0 or in_chans < 1:
        raise UserError(f"num_classes must be >= 0 and in_chans >= 1 (got {num_classes}, {in_chans})")
    spec, tf = resolve(name)
    if row is not None:
        spec = spec.with_(preprocess=row.preprocess)  # preprocessing travels with the weights
        if row.bn_eps is not None:
            overrides.setdefault("bn_eps", row.bn_eps)
    model = build(spec, num_classes, in_chans, tf=tf, **overrides)
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights, adapt=adapt)
    return model


def _pretrained_row(name: str, pretrained: bool | str):
    """The pretrained row create_model follows: the tag in `pretrained` or in the name
    ("efficientnet_b0.ra_in1k", as timm: without pretrained=True only its preprocessing is used),
    or the model's default row for pretrained=True."""
    if not pretrained and "." not in name:
        return None
    from .pretrained import find_pretrained

    row = find_pretrained(pretrained if isinstance(pretrained, str) else name)
    if name not in (row.tag, row.model, row.arch):
        raise UserError(f"pretrained weights {row.tag} are for {row.model}, not {name}")
    return row
