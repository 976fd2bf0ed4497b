"""effnet: the EfficientNet family (V1, Lite, V2) and the methods behind it, in PyTorch."""

from .arch.scaling import compound, scale, scale_compound
from .arch.spec import NetSpec, Preprocess, Stage, Stem
from .errors import UserError
from .models import build, create_model, get_spec, list_models
from .nn.model import EfficientNet
from .pretrained import list_pretrained

__all__ = [
    "EfficientNet", "NetSpec", "Preprocess", "Stage", "Stem", "UserError", "build", "compound",
    "create_model", "get_spec", "list_models", "list_pretrained", "scale", "scale_compound",
]
__version__ = "0.1.0"
