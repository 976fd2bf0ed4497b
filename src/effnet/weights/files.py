"""Weights files in and out: read .safetensors and weights_only-safe .pth files (never a pickled
object), unwrap training checkpoints, write safetensors atomically with effnet's metadata."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file as _st_load_file
from safetensors.torch import save as _st_save
from torch import nn

from ..arch.config import ModelConfig
from ..errors import UserError, error_line
from ..fileio import atomic_write_bytes


# --- reading ----------------------------------------------------------------------------------
def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or .pth/.pt/.bin file, training wrappers and `module.` removed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such weights file: {path}")
    if path.suffix.lower() == ".pt2":  # from `effnet export` / `effnet quantize`: a frozen graph
        raise UserError(f"{path} is an exported (or int8) program for `effnet eval` / `effnet "
                        f"predict`, not weights; use the fp32 .safetensors it was made from")
    try:
        if path.suffix.lower() == ".safetensors":
            obj = _st_load_file(str(path), device="cpu")
        else:
            # timm's train.py stores its argparse.Namespace beside the weights: harmless, allowed
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise unpickling_error(path, e) from e
    except Exception as e:  # truncated, corrupt, not a weights file at all
        raise UserError(f"cannot read weights file {path}: {error_line(e)}") from e
    return clean_state_dict(obj, source=str(path))


def unpickling_error(path: Path, e: Exception) -> UserError:
    # torch's message is a page of advice; keep the part that says what was found
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    if refused:
        return UserError(f"refusing to load {path}: it holds a pickled Python object "
                         f"({refused.group(1)}), not only tensors; only weights_only-safe .pth "
                         f"files and .safetensors are read")
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
    return UserError(f"cannot read weights file {path}: not a PyTorch weights file"
                     + (f" ({detail.group(1).strip()})" if detail else ""))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The str -> str metadata of a safetensors file (empty for other files)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise UserError(f"cannot read weights file {path}: {error_line(e)}") from e


def saved_config(meta: Mapping[str, str]) -> ModelConfig | None:
    """The model config an effnet safetensors file was written with (None for older files)."""
    if "config" not in meta:
        return None
    try:
        return ModelConfig.from_json(meta["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"weights metadata holds an invalid model config ({error_line(e)})") from None


_WRAPPERS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def clean_state_dict(obj, source: str = "weights") -> dict[str, torch.Tensor]:
    """Unwrap a training checkpoint ({"state_dict": ...}, {"model": ...}; the EMA copy only when
    it is all there is) and strip DDP/compile prefixes."""
    while isinstance(obj, Mapping) and obj and not _all_tensors(obj):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise UserError(f"{source} is not a state dict: entry {bad!r} is a "
                            f"{type(obj[bad]).__name__}, not a tensor")
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise UserError(f"{source} holds no tensors (found {type(obj).__name__})")
    sd = {str(k): v for k, v in obj.items()}
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _all_tensors(obj: Mapping) -> bool:
    return all(isinstance(v, torch.Tensor) for v in obj.values())


# --- writing ----------------------------------------------------------------------------------
def save_weights(model_or_sd, path: str | os.PathLike,
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Write a safetensors file atomically (temp file, fsync, rename): an interrupted save never
    leaves a half-written file under `path`. A model also records its name, class count, input
    channels, BN settings, padding and preprocessing: its whole `config`, as JSON."""
    meta: dict[str, str] = {"format": "effnet"}
    if isinstance(model_or_sd, nn.Module):
        model = model_or_sd
        sd = model.state_dict()
        config = getattr(model, "config", None)
        if config is not None:
            meta.update(model=config.spec.name, num_classes=str(config.num_classes),
                        config=json.dumps(config.to_dict()))
    elif isinstance(model_or_sd, Mapping):
        sd = model_or_sd
    else:
        raise UserError(f"save_weights needs a model or a state dict, "
                        f"not {type(model_or_sd).__name__}")
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})

    tensors, seen = {}, set()
    for k, v in sd.items():
        t = v.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in seen:  # safetensors refuses shared storage
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[k] = t
    data = _st_save(tensors, metadata=meta)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names by class id (torchvision's metadata, no download)."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])
