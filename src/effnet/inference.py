"""Load a model for inference (a zoo name, or a trained run's spec.json) and prepare images for it."""

from __future__ import annotations

from pathlib import Path

import torch

from .arch.config import ModelConfig
from .arch.preprocess import Preprocess
from .errors import UserError
from .models import get_config, make_model
from .nn.model import EfficientNet
from .rundir import RunDir
from .weights import read_metadata, saved_config

__all__ = ["load_exported", "load_for_inference", "open_image", "preprocess_image"]

EXPORT_SUFFIXES = (".pt2", ".onnx")  # files eval and predict run as exported (load_exported)


def load_for_inference(model_name: str | None, weights: Path | None, num_classes: int | None = None,
                       pretrained: str | None = None, *, fallback_classes: int | None = None,
                       ) -> tuple[EfficientNet, list[str] | None]:
    """An eval-mode model and its class names (None when unknown), built by the model factory.

    `pretrained` (a tag or model name of `effnet models --pretrained`) loads published weights
    with the preprocessing they were trained with, instead of `weights`.

    Otherwise the network is rebuilt from the weights' own model config when there is one: a run's
    `spec.json` beside the weights, or the config effnet writes into every safetensors file. So
    scaled, searched or fine-tuned models need no name and keep the BN settings they were trained
    with; a `model_name` given too must name the same network (`ModelConfig.layers`), or this is
    a UserError rather than a silent choice of one of them. Weights without a config build
    `model_name` with the class count of `num_classes`, the weights, `fallback_classes` or 1000.
    A `num_classes` the weights do not have is refused either way.
    """
    if pretrained is not None:  # with weights too, the factory refuses the pair
        return make_model(model_name or pretrained, num_classes=num_classes, weights=weights,
                          pretrained=pretrained).eval(), None
    if weights is not None and weights.suffix in EXPORT_SUFFIXES:
        return load_exported(weights)
    if weights is not None and not weights.is_file():
        raise UserError(f"no such weights file: {weights}")
    config, classes, source = _saved_config(weights)
    if config is not None:
        if model_name is not None and get_config(model_name).layers() != config.layers():
            raise UserError(f"--model {model_name} is not the network of {weights}: {source} "
                            f"says {config.spec.name}; drop --model to build that, or give "
                            f"weights of {model_name}")
        # a num_classes the weights lack: load_weights refuses it
        return make_model(config, weights=weights, num_classes=num_classes).eval(), classes
    if model_name is None:
        raise UserError("--model is required (the weights carry no model config)")
    if num_classes is None and weights is not None and "num_classes" not in read_metadata(weights):
        num_classes = fallback_classes
    return make_model(model_name, num_classes=num_classes, weights=weights).eval(), None


def _saved_config(weights: Path | None) -> tuple[ModelConfig | None, list[str] | None, str]:
    """(model config, class names, where the config was found) that come with a weights file: its
    run's spec.json, else the config in a safetensors file effnet wrote; Nones without one."""
    if weights is None:
        return None, None, ""
    run = RunDir(weights.parent)
    if run.spec_file.is_file():
        return run.model_config(), run.classes(), f"its run's {run.spec_file}"
    return saved_config(read_metadata(weights)), None, "the config saved in it"


def load_exported(path: Path):
    """The model in a file that `effnet export`, `quantize` or `deploy` wrote, and its class names:
    a .pt2 (plain or int8; only files effnet wrote are read, and none that would unpickle:
    tools/export.py says what is checked) or a .onnx (fp32 or int8, run by onnxruntime)."""
    if not path.is_file():
        raise UserError(f"no such weights file: {path}")
    if path.suffix == ".onnx":
        from .tools.onnx_runtime import load_onnx

        return load_onnx(path)
    from .tools.export import load_program

    return load_program(path)


def open_image(path: Path, size: int | None = None):
    """An RGB PIL image (any mode, 16-bit, alpha, EXIF-rotated), or one clear error line; a JPEG
    decoded at no less than `size` px a side (None: in full)."""
    from .data.images import READ_ERRORS, load_rgb

    if not path.is_file():
        raise UserError(f"no such image: {path}")
    try:
        return load_rgb(path, size)
    except READ_ERRORS as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def preprocess_image(path: Path, pre: Preprocess, size: int | None = None) -> torch.Tensor:
    """An image file as the model's input: `pre` is a resolved data config (effnet.data.config)."""
    from .data import eval_transform

    transform = eval_transform(pre, size or pre.eval_size)
    return transform(open_image(path, transform.decode_size))
