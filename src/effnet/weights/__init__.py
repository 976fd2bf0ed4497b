"""Weights in and out: read effnet, timm, torchvision and lukemelas state dicts, map their keys
onto effnet's modules, load them (adapting the classifier or the first conv on request), save
safetensors.

files.py reads and writes files (never unpickling beyond tensors: `.pth` goes through
`torch.load(weights_only=True)`, everything effnet writes is safetensors); sources.py holds one
row per source library (key maps, BatchNorm eps, padding); conversion.py maps and loads.
"""

from .conversion import adapt_input_conv, convert, load_weights, module_map, source_bn_eps
from .files import (
    clean_state_dict,
    imagenet_classes,
    load_state_dict_file,
    read_metadata,
    save_weights,
    saved_config,
    unpickling_error,
)
from .sources import FORMATS, SOURCES, Source, detect_format

__all__ = [
    "FORMATS", "SOURCES", "Source",
    "adapt_input_conv", "clean_state_dict", "convert", "detect_format", "imagenet_classes",
    "load_state_dict_file", "load_weights", "module_map", "read_metadata", "save_weights",
    "saved_config", "source_bn_eps", "unpickling_error",
]
