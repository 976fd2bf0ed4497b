"""One serialisable value that rebuilds a network exactly: the spec (with its preprocessing), the
BatchNorm settings and padding the weights were trained with, the class count and input channels.

It is stored on every model (`model.config`), written with every run (spec.json) and into every
safetensors file effnet saves, so `--resume`, `predict` and `eval` rebuild the network that was
trained: a fine-tune from torchvision V2 weights keeps their BN eps 1e-3 instead of falling back
to the architecture's default. Pure data, like the rest of `arch`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .spec import NetSpec, spec_from_dict, spec_to_dict

CONFIG_FORMAT = "effnet-model-config/1"


@dataclass(frozen=True)
class ModelConfig:
    spec: NetSpec
    num_classes: int = 1000
    in_chans: int = 3
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    tf_padding: bool = False  # TensorFlow "same" padding, for TF-trained weights

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
        d = asdict(self)
        d["spec"] = spec_to_dict(self.spec)
        return {"format": CONFIG_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = {k: v for k, v in d.items() if k != "format"}
        return cls(spec=spec_from_dict(d.pop("spec")), **d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


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
                           in_chans=int(d.get("in_chans", 3)), bn_eps=1e-3 if tf else 1e-5,
                           bn_momentum=0.01 if tf else 0.1, tf_padding=tf)
    if "spec" in d:
        return ModelConfig.from_dict(d)
    return ModelConfig(spec=spec_from_dict(d))
