"""effnet: the EfficientNet family (V1, Lite, V2) and the methods behind it, in PyTorch.

The public names load on first use (PEP 562), so `effnet -h` and a mistyped flag answer without
importing torch (~3 s); `from effnet import create_model` works as usual.
"""

from __future__ import annotations

from .errors import UserError
from .lazy import lazy_names

_LAZY = {
    "compound": "arch.scaling", "scale": "arch.scaling", "scale_compound": "arch.scaling",
    "ModelConfig": "arch.config",
    "NetSpec": "arch.spec", "Stage": "arch.spec", "Stem": "arch.spec", "Preprocess": "arch.preprocess",
    "build": "models", "create_model": "models", "get_spec": "models", "list_models": "models",
    "make_model": "models", "resolve_data_config": "data.config",
    "EfficientNet": "nn.model", "list_pretrained": "pretrained",
}

__all__ = [
    "EfficientNet", "ModelConfig", "NetSpec", "Preprocess", "Stage", "Stem", "UserError", "build", "compound",
    "create_model", "get_spec", "list_models", "list_pretrained", "make_model", "resolve_data_config",
    "scale", "scale_compound",
]
__version__ = "0.1.0"


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
