"""The data config: which preprocessing (sizes, crop, interpolation, mean, std) to use, resolved in
one place for every reader (training, eval, predict, export, quantize, Grad-CAM, the searches, the
benchmarks), as timm's `resolve_data_config` over `model.pretrained_cfg`.

Precedence, field by field, the first source that sets a field wins:
  1. an explicit flag of a command (`flags`: eval's `--img-size`, export's `--size`, a search's
     `--base-size`);
  2. the recipe (`recipe`: its img_size, eval_size, train_size_ratio);
  3. the weights: the preprocessing the model's weights were trained with, `config.preprocess` (a
     published row's, a run's spec.json, the config an effnet file carries);
  4. the architecture default: `default` where the caller knows it (a compound-scaled network:
     its base's at the scaled size), else the zoo's for the model's name (effnet.arch.conventions),
     else ImageNet statistics at 224 px.
The weights and the default are whole values (every field set); flags and recipes set a few.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..arch.config import ModelConfig
from ..arch.conventions import default_preprocess
from ..arch.preprocess import Preprocess


@dataclass(frozen=True)
class DataOverrides:
    """The fields a recipe or a command's flags set; None leaves a field to the next source."""

    train_size: int | None = None
    eval_size: int | None = None
    # without a train size at this level or above: train at this fraction of the resolved eval size
    train_size_ratio: float | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    crop_mode: str | None = None


NO_OVERRIDES = DataOverrides()


def model_config_of(model) -> ModelConfig:
    """The ModelConfig of a model (an EfficientNet or a loaded export) or the config itself."""
    return model if isinstance(model, ModelConfig) else model.config


def resolve_data_config(model, recipe: DataOverrides | None = None,
                        flags: DataOverrides | None = None,
                        default: Preprocess | None = None) -> Preprocess:
    """The preprocessing to use for `model` (a model or its ModelConfig), by the precedence in the
    module docstring: flag > recipe > weights > architecture default."""
    config = model_config_of(model)
    base = config.preprocess or default or default_preprocess(config.spec.name)
    layers = [flags or NO_OVERRIDES, recipe or NO_OVERRIDES]
    changes = {}
    for f in fields(Preprocess):
        if f.name == "train_size":
            continue
        given = next((getattr(o, f.name) for o in layers if getattr(o, f.name) is not None), None)
        if given is not None:
            changes[f.name] = tuple(given) if f.name in ("mean", "std") else given
    eval_size = changes.get("eval_size", base.eval_size)
    for o in layers:
        if o.train_size is not None:
            changes["train_size"] = o.train_size
            break
        if o.train_size_ratio is not None:
            changes["train_size"] = round(eval_size * o.train_size_ratio)
            break
    return replace(base, **changes)
