"""One serialisable value that rebuilds a network exactly: the spec, the BatchNorm settings and
padding the weights were trained with, the class count and input channels, and the preprocessing
the weights expect (timm's `pretrained_cfg`; effnet.data.config resolves it for use).

It is stored on every model (`model.config`), written with every run (spec.json) and into every
safetensors file effnet saves, so `--resume`, `predict` and `eval` rebuild the network that was
trained: a fine-tune from torchvision V2 weights keeps their BN eps 1e-3 instead of falling back
to the architecture's default. Pure data, like the rest of `arch`.

The file form stays "effnet-model-config/1", where the preprocessing sits inside the "spec" object
as effnet wrote it before the spec lost it: files of every version read alike in both directions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .preprocess import Preprocess, preprocess_from_dict, preprocess_to_dict
from .spec import NetSpec, spec_from_dict, spec_to_dict

CONFIG_FORMAT = "effnet-model-config/1"
TF_BN_EPS, TF_BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's BatchNorm (momentum in PyTorch's sense)


@dataclass(frozen=True)
class ModelConfig:
    spec: NetSpec
    num_classes: int = 1000
    in_chans: int = 3
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    tf_padding: bool = False  # TensorFlow "same" padding, for TF-trained weights
    # what the weights expect of an image; None: nothing known (a bare architecture), so the
    # architecture default applies (effnet.data.config.resolve_data_config)
    preprocess: Preprocess | None = None

    def __post_init__(self) -> None:
        if self.num_classes < 0 or self.in_chans < 1:
            raise ValueError(f"num_classes must be >= 0 and in_chans >= 1 "
                             f"(got {self.num_classes}, {self.in_chans})")
        if not (0 < self.bn_eps < 1 and 0 <= self.bn_momentum <= 1):
            raise ValueError(f"BatchNorm eps must be in (0, 1) and momentum in [0, 1] "
                             f"(got {self.bn_eps}, {self.bn_momentum})")

    def with_(self, **changes) -> ModelConfig:
        return replace(self, **changes)

    def layers(self) -> tuple:
        """What a weights file fits and computes with: the stem, stages, head, activation and
        padding. Not the name, the preprocessing, regularisation rates, BN settings or the class
        count, which a fine-tune or a pretrained tag changes on the same network."""
        s = self.spec
        return s.stem, s.stages, s.head, s.act, self.tf_padding

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "preprocess"}
        d["spec"] = spec_dict(self.spec, self.preprocess)
        return {"format": CONFIG_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = {k: v for k, v in d.items() if k != "format"}
        spec = d.pop("spec")
        return cls(spec=spec_from_dict(spec), preprocess=_preprocess_in(spec), **d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


def spec_dict(spec: NetSpec, preprocess: Preprocess | None) -> dict:
    """The file form of a spec with the preprocessing beside it (see the module docstring)."""
    d = spec_to_dict(spec)
    if preprocess is not None:
        d["preprocess"] = preprocess_to_dict(preprocess)
    return d


def _preprocess_in(spec: dict) -> Preprocess | None:
    return preprocess_from_dict(spec["preprocess"]) if isinstance(spec.get("preprocess"), dict) else None


def read_config_file(path: str | Path) -> ModelConfig:
    """A model config from a JSON file: a config itself, a run's spec.json (which holds one under
    "config"), or a bare spec (a searched architecture), which gets the default settings."""
    d = json.loads(Path(path).read_text())
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    if isinstance(d.get("config"), dict):
        d = d["config"]
    if "spec" in d and "format" not in d:  # a run's spec.json from effnet 0.1.0, before the config
        tf = bool(d.get("tf", False))
        return ModelConfig(spec=spec_from_dict(d["spec"]), num_classes=int(d.get("num_classes", 1000)),
                           in_chans=int(d.get("in_chans", 3)), bn_eps=TF_BN_EPS if tf else 1e-5,
                           bn_momentum=TF_BN_MOMENTUM if tf else 0.1, tf_padding=tf,
                           preprocess=_preprocess_in(d["spec"]))
    if "spec" in d:
        return ModelConfig.from_dict(d)
    return ModelConfig(spec=spec_from_dict(d), preprocess=_preprocess_in(d))


def load_config_file(path: str | Path) -> ModelConfig:
    """`read_config_file`, or one error line naming the file."""
    from ..errors import UserError

    if not Path(path).is_file():
        raise UserError(f"no such model file: {path}")
    try:
        return read_config_file(path)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not an effnet model config or spec ({e})") from None
