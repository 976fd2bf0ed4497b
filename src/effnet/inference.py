"""Load a model for inference (a zoo name, or a trained run's spec.json) and prepare images for it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .arch.spec import Preprocess, spec_from_dict
from .errors import UserError
from .models import build, create_model
from .nn.model import EfficientNet
from .weights import load_weights, read_metadata

RUN_SPEC_FILE = "spec.json"  # written by `effnet train` beside its weights


def load_for_inference(model_name: str | None, weights: Path | None,
                       num_classes: int | None = None) -> tuple[EfficientNet, list[str] | None]:
    """An eval-mode model and its class names (None when unknown).

    With a `spec.json` beside the weights (a run of `effnet train`) the network is rebuilt from it,
    so scaled or searched models need no name. Otherwise the class count comes from `num_classes`,
    the weights' metadata, or 1000.
    """
    if weights is not None and weights.suffix == ".pt2":
        return load_exported(weights)
    classes = None
    run_spec = weights.parent / RUN_SPEC_FILE if weights is not None else None
    if weights is not None and not weights.exists():
        raise UserError(f"no such weights file: {weights}")
    if run_spec is not None and run_spec.exists() and model_name is None:
        try:
            run = json.loads(run_spec.read_text())
            spec = spec_from_dict(run["spec"])
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{run_spec} is not a valid effnet run spec ({e})") from None
        classes = run.get("classes")
        model = build(spec, num_classes=int(run.get("num_classes", len(classes or []) or 1000)),
                      in_chans=int(run.get("in_chans", 3)), tf=bool(run.get("tf", False)))
        load_weights(model, weights)
    else:
        if model_name is None:
            raise UserError("--model is required (no spec.json beside the weights)")
        if num_classes is None and weights is not None and weights.suffix == ".safetensors":
            meta = read_metadata(weights)
            num_classes = int(meta["num_classes"]) if "num_classes" in meta else None
        model = create_model(model_name, num_classes=num_classes or 1000, weights=weights)
    return model.eval(), classes


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
    from .data import eval_transform

    return eval_transform(pre, size or pre.eval_size)(open_image(path))
