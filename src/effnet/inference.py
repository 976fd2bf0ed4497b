"""Load a model for inference (a zoo name, or a trained run's spec.json) and prepare images for it."""

from __future__ import annotations

from pathlib import Path

import torch

from .arch.preprocess import Preprocess
from .errors import UserError
from .models import RUN_SPEC_FILE, make_model, read_run_dir
from .nn.model import EfficientNet
from .weights import read_metadata, saved_config

__all__ = ["RUN_SPEC_FILE", "load_exported", "load_for_inference", "open_image", "preprocess_image"]


def load_for_inference(model_name: str | None, weights: Path | None, num_classes: int | None = None,
                       pretrained: str | None = None) -> tuple[EfficientNet, list[str] | None]:
    """An eval-mode model and its class names (None when unknown), built by the model factory.

    `pretrained` (a tag or model name of `effnet models --pretrained`) loads published weights
    with the preprocessing they were trained with, instead of `weights`.

    Otherwise the network is rebuilt from the weights' own model config when there is one: a run's
    `spec.json` beside the weights, or the config effnet writes into every safetensors file. So
    scaled, searched or fine-tuned models need no name and keep the BN settings they were trained
    with. Otherwise `model_name` is built with the class count of `num_classes`, the weights, or 1000.
    """
    if pretrained is not None:  # with weights too, the factory refuses the pair
        return make_model(model_name or pretrained, num_classes=num_classes, weights=weights,
                          pretrained=pretrained).eval(), None
    if weights is not None and weights.suffix == ".pt2":
        return load_exported(weights)
    if weights is not None and not weights.is_file():
        raise UserError(f"no such weights file: {weights}")
    if model_name is None and weights is not None and (weights.parent / RUN_SPEC_FILE).is_file():
        run = read_run_dir(weights.parent, weights.name)
        return make_model(run.config, weights=weights).eval(), run.classes
    config = saved_config(read_metadata(weights)) if model_name is None and weights else None
    if config is not None:
        return make_model(config, weights=weights).eval(), None
    if model_name is None:
        raise UserError("--model is required (the weights carry no model config)")
    return make_model(model_name, num_classes=num_classes, weights=weights).eval(), None


def load_exported(path: Path):
    """The model in a .pt2 from `effnet export --format exported-program` or `effnet quantize`
    (int8), and its class names. Only files effnet wrote are read, and none that would unpickle
    (tools/export.py says what is checked)."""
    from .tools.export import load_program

    if not path.is_file():
        raise UserError(f"no such weights file: {path}")
    return load_program(path)


def open_image(path: Path):
    """An RGB PIL image (any mode, 16-bit, alpha, EXIF-rotated), or one clear error line."""
    from .data.images import READ_ERRORS, load_rgb

    if not path.is_file():
        raise UserError(f"no such image: {path}")
    try:
        return load_rgb(path)
    except READ_ERRORS as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def preprocess_image(path: Path, pre: Preprocess, size: int | None = None) -> torch.Tensor:
    """An image file as the model's input: `pre` is a resolved data config (effnet.data.config)."""
    from .data import eval_transform

    return eval_transform(pre, size or pre.eval_size)(open_image(path))
