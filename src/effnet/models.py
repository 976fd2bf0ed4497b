"""Model names (timm's), `list_models`, and the one model factory, `make_model`.

`make_model` builds every model effnet makes: from a model name (a zoo name, its `tf_` twin, or a
tagged name such as "efficientnet_b0.ra_in1k", as timm), a JSON file holding a model config or a
bare spec (a run's spec.json, a searched architecture's best.json), a run directory, a NetSpec or a
ModelConfig; with weights (a file or state dict from effnet, timm, torchvision or lukemelas) or
published ones (`pretrained`), a class count, input channels, and what a recipe changes (scaling,
dropout, stochastic depth, BN settings, image sizes, head init). `create_model` (the API), the
trainer (effnet.train.network), inference and export all call it. It decides, once:
- weights or pretrained, never both;
- BatchNorm settings and padding: given > the published weights' (effnet.pretrained.row_config,
  by effnet.weights' rule per source) > the name's conventions (effnet.arch.conventions); a
  weights file from a source of other conventions is reconciled by `load_weights`, with a warning;
- class count and input channels: given > the weights' (a published row, an effnet file) > the
  config's (1000 / 3 for a zoo name);
- the preprocessing the weights expect, `model.config.preprocess`, by effnet.data.config's
  precedence (a recipe's sizes > the weights' > the architecture default);
- the head: weights of another class count start a new classifier (pretrained, or adapt=True),
  scaled by `head_init_scale` as a new model's is.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .arch.config import ModelConfig, load_config_file
from .arch.conventions import conventions_config, model_names, zoo_config
from .arch.scaling import scale_by
from .arch.spec import NetSpec
from .data.config import resolve_data_config
from .errors import UserError
from .nn.model import EfficientNet
from .rundir import RunDir

__all__ = ["ModelPlan", "build", "create_model", "get_config", "get_spec", "list_models", "make_model",
           "model_names", "plan_model"]



def list_models(pattern: str = "*") -> list[str]:
    """Names matching a shell-style pattern, e.g. `list_models("*lite*")`."""
    return [n for n in model_names() if fnmatch.fnmatch(n, pattern)]


def is_config_file(name: str) -> bool:
    return str(name).lower().endswith(".json")


def named_config(name: str) -> ModelConfig:
    """The config of a zoo name (effnet.arch.conventions), or one error line naming close ones."""
    try:
        return zoo_config(name)
    except KeyError:
        close = difflib.get_close_matches(name, model_names(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `effnet models`"
        raise UserError(f"unknown model {name!r}{hint}") from None


def _pretrained_row(name: str, pretrained: bool | str):
    """The published row a name follows: the tag in `pretrained` or in the name
    ("efficientnet_b0.ra_in1k", as timm: without pretrained=True only its preprocessing, class
    count and BN eps are used), or the model's default row for pretrained=True."""
    if not pretrained and "." not in name:
        return None
    from .pretrained import find_pretrained

    row = find_pretrained(pretrained if isinstance(pretrained, str) else name)
    if name not in (row.tag, row.model, row.arch):
        raise UserError(f"pretrained weights {row.tag} are for {row.model}, not {name}")
    return row


def _source(source, pretrained: bool | str):
    """(config, published row or None, a run directory's weights or None) of a factory source."""
    if isinstance(source, ModelConfig):
        return source, None, None
    if isinstance(source, NetSpec):
        return ModelConfig(source), None, None
    name = os.fspath(source)
    if Path(name).is_dir() and name not in model_names():
        run = RunDir(name)
        return run.model_config(), None, run.best_weights()
    if is_config_file(name):
        return load_config_file(name), None, None
    row = _pretrained_row(name, pretrained)
    if row is not None:
        from .pretrained import row_config

        return row_config(row), row, None
    return named_config(name), None, None


def _saved(weights) -> tuple[ModelConfig | None, int | None]:
    """The config an effnet weights file carries and its class count (None, None otherwise)."""
    if not isinstance(weights, (str, os.PathLike)):
        return None, None
    from .weights import read_metadata, saved_config

    meta = read_metadata(weights)
    config = saved_config(meta)
    if config is not None:
        return config, config.num_classes
    return None, int(meta["num_classes"]) if "num_classes" in meta else None  # before the config


@dataclass(frozen=True)
class ModelPlan:
    """What `make_model` builds and loads: the network's config and the weights (None: none)."""

    config: ModelConfig
    weights: object = None  # a file path or a state dict
    adapt: bool = False


def plan_model(source, *, num_classes: int | None = None, in_chans: int | None = None,
               weights=None, pretrained: bool | str = False, adapt: bool = False,
               phi: float | None = None, width: float | None = None, depth: float | None = None,
               dropout: float | None = None, drop_path: float | None = None,
               bn_eps: float | None = None, bn_momentum: float | None = None,
               tf_padding: bool | None = None, data=None) -> ModelPlan:
    """The config `make_model` builds and the weights it loads (see the module docstring);
    `data`: the recipe's effnet.data.config.DataOverrides."""
    if weights is not None and pretrained:
        raise UserError("give either weights or pretrained, not both")
    config, row, run_weights = _source(source, pretrained)
    if pretrained:
        if row is None:
            raise UserError("pretrained weights are chosen by a model name or tag, not by a "
                            "spec, config or run directory")
        from .pretrained import resolve_pretrained

        weights, adapt = resolve_pretrained(row)[1], True
    weights = run_weights if weights is None else weights
    # a published row's preprocessing stands over what an older conversion of its file recorded
    saved, saved_classes = (None, None) if row is not None else _saved(weights)
    try:
        base_pre = resolve_data_config(config)  # the unscaled network's: its weights' or default
        spec, m = scale_by(config.spec, phi, width, depth)
        scaled = spec is not config.spec
        default = base_pre if m.resolution == 1 else base_pre.at_eval_size(
            m.scaled_size(base_pre.eval_size))
        # the weights' own preprocessing; a base's no longer describes a network scaled from it
        weights_pre = (saved and saved.preprocess) or (None if scaled else config.preprocess)
        spec = spec.with_(dropout=spec.dropout if dropout is None else dropout,
                          drop_path=spec.drop_path if drop_path is None else drop_path)
        given = {"num_classes": num_classes if num_classes is not None else saved_classes,
                 "in_chans": in_chans if in_chans is not None else (saved and saved.in_chans),
                 "bn_eps": bn_eps, "bn_momentum": bn_momentum, "tf_padding": tf_padding}
        config = config.with_(spec=spec, preprocess=weights_pre,
                              **{k: v for k, v in given.items() if v is not None})
        config = config.with_(preprocess=resolve_data_config(config, recipe=data, default=default))
    except ValueError as e:
        raise UserError(str(e)) from None
    return ModelPlan(config, weights, adapt)


def make_model(source, *, head_init_scale: float = 1.0, **options) -> EfficientNet:
    """The one model factory (see the module docstring); options as `plan_model`'s."""
    plan = plan_model(source, **options)
    model = EfficientNet.from_config(plan.config)
    new_head = model.classifier
    if plan.weights is not None:
        from .weights import load_weights

        load_weights(model, plan.weights, adapt=plan.adapt)
    # a loaded head is kept; a new one (no weights, or adapted to another class count) is scaled
    fresh = plan.weights is None or model.classifier is not new_head
    if head_init_scale != 1.0 and fresh and isinstance(model.classifier, nn.Linear):
        with torch.no_grad():
            model.classifier.weight.mul_(head_init_scale)
    return model


CREATE_OVERRIDES = {"drop_rate": "dropout", "drop_path_rate": "drop_path", "bn_eps": "bn_eps",
                    "bn_momentum": "bn_momentum", "tf_padding": "tf_padding"}


def create_model(name, num_classes: int | None = None, in_chans: int | None = None,
                 weights=None, adapt: bool = False, pretrained: bool | str = False,
                 **overrides) -> EfficientNet:
    """Build a named model (or the model a config/spec JSON file or a run directory describes);
    `weights` (a .pth/.safetensors path or a state dict from effnet, timm, torchvision or
    lukemelas) are loaded with their key map detected automatically.

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
    unknown = sorted(set(overrides) - set(CREATE_OVERRIDES))
    if unknown:
        raise TypeError(f"create_model() got an unexpected keyword argument {unknown[0]!r}")
    return make_model(name, num_classes=num_classes, in_chans=in_chans, weights=weights,
                      adapt=adapt, pretrained=pretrained,
                      **{CREATE_OVERRIDES[k]: v for k, v in overrides.items()})


def get_config(name: str) -> ModelConfig:
    """The config a model name (zoo name, tagged name, config file, run directory) builds."""
    return _source(name, False)[0]


def get_spec(name: str) -> NetSpec:
    """The architecture behind a model name (or config file)."""
    return get_config(name).spec


def build(spec: NetSpec, num_classes: int = 1000, in_chans: int = 3, tf: bool = False,
          **overrides) -> EfficientNet:
    """Build any spec (a zoo variant, a scaled spec, a searched one) with PyTorch conventions or,
    `tf=True`, TensorFlow's."""
    return create_model(conventions_config(spec, tf), num_classes, in_chans, **overrides)
