"""Weights in and out: read effnet, timm, torchvision and lukemelas state dicts, map their keys
onto effnet's modules, load them (adapting the classifier or the first conv on request), save
safetensors.

Key maps are written out per source and per block type, so a reader can check each line against the
source's module names; nothing is matched by shape or order. Files are never unpickled beyond
tensors: `.pth` goes through `torch.load(weights_only=True)`, everything we write is safetensors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file as _st_load_file
from safetensors.torch import save as _st_save
from torch import nn

from .arch.config import ModelConfig
from .errors import UserError
from .fileio import atomic_write_bytes
from .nn.blocks import FusedMBConv, MBConv
from .nn.layers import ConvNormAct, SqueezeExcite

FORMATS = ("effnet", "timm", "torchvision", "lukemelas")

# --- key maps: effnet module -> source module, per block type --------------------------------
# effnet block types: "mbconv" (1x1 expand, dw, [se], project), "dsconv" (MBConv with e=1: dw, [se],
# project), "fused" (kxk conv, [se], 1x1 project), "fused1" (Fused with e=1: one kxk conv with act)
TIMM_BLOCK = {
    "mbconv": {"expand.conv": "conv_pw", "expand.bn": "bn1", "dw.conv": "conv_dw", "dw.bn": "bn2",
               "se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand",
               "project.conv": "conv_pwl", "project.bn": "bn3"},  # InvertedResidual
    "dsconv": {"dw.conv": "conv_dw", "dw.bn": "bn1",
               "se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand",
               "project.conv": "conv_pw", "project.bn": "bn2"},  # DepthwiseSeparableConv
    "fused": {"conv.conv": "conv_exp", "conv.bn": "bn1",
              "se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand",
              "project.conv": "conv_pwl", "project.bn": "bn2"},  # EdgeResidual
    "fused1": {"conv.conv": "conv", "conv.bn": "bn1"},  # ConvBnAct
}
# torchvision blocks are `block` Sequentials of Conv2dNormActivation (.0 conv, .1 bn) and
# SqueezeExcitation (fc1, fc2); its MBConv always has SE and its FusedMBConv never does
TORCHVISION_BLOCK = {
    "mbconv": {"expand.conv": "block.0.0", "expand.bn": "block.0.1",
               "dw.conv": "block.1.0", "dw.bn": "block.1.1",
               "se.reduce": "block.2.fc1", "se.expand": "block.2.fc2",
               "project.conv": "block.3.0", "project.bn": "block.3.1"},
    "dsconv": {"dw.conv": "block.0.0", "dw.bn": "block.0.1",
               "se.reduce": "block.1.fc1", "se.expand": "block.1.fc2",
               "project.conv": "block.2.0", "project.bn": "block.2.1"},
    "fused": {"conv.conv": "block.0.0", "conv.bn": "block.0.1",
              "project.conv": "block.1.0", "project.bn": "block.1.1"},
    "fused1": {"conv.conv": "block.0.0", "conv.bn": "block.0.1"},
}
LUKEMELAS_BLOCK = {
    "mbconv": {"expand.conv": "_expand_conv", "expand.bn": "_bn0",
               "dw.conv": "_depthwise_conv", "dw.bn": "_bn1",
               "se.reduce": "_se_reduce", "se.expand": "_se_expand",
               "project.conv": "_project_conv", "project.bn": "_bn2"},
    "dsconv": {"dw.conv": "_depthwise_conv", "dw.bn": "_bn1",
               "se.reduce": "_se_reduce", "se.expand": "_se_expand",
               "project.conv": "_project_conv", "project.bn": "_bn2"},
}
TIMM_TOP = {"stem.conv": "conv_stem", "stem.bn": "bn1", "head.conv": "conv_head", "head.bn": "bn2",
            "classifier": "classifier"}
LUKEMELAS_TOP = {"stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head",
                 "head.bn": "_bn1", "classifier": "_fc"}


def _torchvision_top(num_stages: int) -> dict[str, str]:
    head = f"features.{num_stages + 1}"  # features: stem, one entry per stage, head conv
    return {"stem.conv": "features.0.0", "stem.bn": "features.0.1", "head.conv": f"{head}.0",
            "head.bn": f"{head}.1", "classifier": "classifier.1"}


# BatchNorm eps the source's weights were trained with (SPEC G.1); timm and effnet files do not say,
# the model name (tf_ or not) does
LUKEMELAS_BN_EPS = 1e-3  # TF ports: V1 and Lite
TORCHVISION_V1_BN_EPS = 1e-5
TORCHVISION_V2_BN_EPS = 1e-3
# torchvision builds B5-B7 with eps 1e-3 too: their weights are lukemelas' TF ports
TORCHVISION_EPS_1E3_V1 = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")

_ADAPTABLE = ("classifier.weight", "classifier.bias")  # plus the first conv's weight


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
        raise UserError(f"cannot read weights file {path}: {_one_line(e)}") from e
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
        raise UserError(f"cannot read weights file {path}: {_one_line(e)}") from e


def saved_config(meta: Mapping[str, str]) -> ModelConfig | None:
    """The model config an effnet safetensors file was written with (None for older files)."""
    if "config" not in meta:
        return None
    try:
        return ModelConfig.from_json(meta["config"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"weights metadata holds an invalid model config ({_one_line(e)})") from None


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


def detect_format(sd: Mapping[str, torch.Tensor]) -> str:
    """Which library's key layout a state dict uses: one of FORMATS."""
    keys = list(sd)
    if any(k.startswith("stem.") for k in keys) and any(k.startswith("stages.") for k in keys):
        return "effnet"
    if "_conv_stem.weight" in sd or any(k.startswith("_blocks.") for k in keys):
        return "lukemelas"
    if "conv_stem.weight" in sd or any(k.startswith("blocks.") for k in keys):
        return "timm"
    if "features.0.0.weight" in sd or any(k.startswith("features.") for k in keys):
        return "torchvision"
    raise UserError(f"unrecognised weights layout (first keys: {', '.join(keys[:3])}); expected "
                    f"effnet, timm, torchvision or lukemelas EfficientNet weights")


# --- mapping ----------------------------------------------------------------------------------
def _block_type(block: nn.Module) -> str:
    if isinstance(block, MBConv):
        return "mbconv" if isinstance(block.expand, ConvNormAct) else "dsconv"
    if isinstance(block, FusedMBConv):
        return "fused" if isinstance(block.project, ConvNormAct) else "fused1"
    return type(block).__name__


def module_map(model: nn.Module, fmt: str) -> dict[str, str]:
    """effnet module path -> source module path for every weighted module of `model`."""
    if fmt == "effnet":
        return {name: name for name, m in model.named_modules() if not list(m.children())}
    if fmt not in FORMATS:
        raise UserError(f"unknown weights format {fmt!r}; expected one of {', '.join(FORMATS)}")
    name = model.spec.name
    if model.spec.stem.kind != "conv":
        raise UserError(f"{fmt} has no weights for {name} (its stem is {model.spec.stem.kind!r})")
    if fmt == "timm":
        top, per_block = dict(TIMM_TOP), TIMM_BLOCK
    elif fmt == "torchvision":
        top, per_block = _torchvision_top(len(model.stages)), TORCHVISION_BLOCK
    else:
        top, per_block = dict(LUKEMELAS_TOP), LUKEMELAS_BLOCK
    out = dict(top)
    index = 0  # lukemelas numbers blocks across stages
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage):
            kind = _block_type(block)
            if kind not in per_block:
                raise UserError(f"{fmt} weights cannot hold {name}: it has no {kind} block "
                                f"(stage {i} block {j})")
            prefix = {"timm": f"blocks.{i}.{j}", "torchvision": f"features.{i + 1}.{j}",
                      "lukemelas": f"_blocks.{index}"}[fmt]
            has_se = isinstance(block.se, SqueezeExcite)
            for ours, theirs in per_block[kind].items():
                if ours.startswith("se.") and not has_se:
                    continue
                out[f"stages.{i}.{j}.{ours}"] = f"{prefix}.{theirs}"
            index += 1
    return out


def convert(sd: Mapping[str, torch.Tensor], model: nn.Module, fmt: str | None = None,
            strict: bool = True) -> dict[str, torch.Tensor]:
    """Rename a state dict from its source layout (detected if `fmt` is None) to `model`'s keys.

    Checks that every key exists and every shape fits, except the classifier's and the first
    conv's input channels: those may differ on purpose and `load_weights` decides (adapt or fail).
    The classifier's tensors are returned under `classifier.*` even when `model` has none.
    """
    fmt = fmt or detect_format(sd)
    mmap = module_map(model, fmt)
    name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
    first_conv = _first_conv_key(model)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, target in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module not in mmap:
            raise UserError(f"{fmt} weights have no counterpart for {name}'s {key}")
        src = f"{mmap[module]}.{leaf}"
        if src not in sd:
            if leaf == "num_batches_tracked":  # older and TF-ported files leave it out
                out[key] = torch.zeros_like(target)
                continue
            if key in _ADAPTABLE:
                continue  # a feature-extractor file: load_weights decides
            if not strict:
                continue
            raise UserError(f"weights do not fit {name}: {fmt} key {src!r} (for {key}) is missing; "
                            f"are they for another model?")
        value = sd[src]
        used.add(src)
        # the classifier and the first conv's input channels may differ on purpose (adapt)
        if key == first_conv:
            fits = value.ndim == 4 and _drop_dim1(value.shape) == _drop_dim1(target.shape)
        else:
            fits = key in _ADAPTABLE or value.shape == target.shape
        if not fits:
            raise UserError(f"weights do not fit {name}: {fmt} key {src!r} has shape "
                            f"{tuple(value.shape)} but {key} needs {tuple(target.shape)}")
        if target.is_floating_point() and not value.is_floating_point():
            # load_state_dict would copy integers or booleans into float weights without a word
            raise UserError(f"weights do not fit {name}: {fmt} key {src!r} holds {value.dtype} "
                            f"but {key} needs floating-point values")
        out[key] = value
    cls_src = mmap.get("classifier", "classifier")
    for leaf in ("weight", "bias"):  # kept even for a model without classifier; see docstring
        src = f"{cls_src}.{leaf}"
        if src in sd:
            out[f"classifier.{leaf}"] = sd[src]
            used.add(src)
    unused = [k for k in sd if k not in used]
    if unused and strict:
        raise UserError(f"weights do not fit {name}: {fmt} key {unused[0]!r} "
                        f"{tuple(sd[unused[0]].shape)} has no place in it "
                        f"({len(unused)} such keys); are they for another model?")
    return out


def _drop_dim1(shape: torch.Size) -> tuple[int, ...]:
    return (shape[0], *shape[2:])


def _first_conv_key(model: nn.Module) -> str:
    return next(f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


# --- loading ----------------------------------------------------------------------------------
def load_weights(model: nn.Module, weights, adapt: bool = False, strict: bool = True) -> nn.Module:
    """Load a weights file (path) or state dict of any supported layout into `model`, in place.

    adapt=True starts a new random classifier when the class count differs and adapts the first
    conv to the model's input channels (timm's rule), instead of failing. BatchNorm eps is set to
    the source's convention where it is known and differs (with a warning).
    """
    meta: dict[str, str] = {}
    if isinstance(weights, (str, os.PathLike)):
        sd = load_state_dict_file(weights)
        meta = read_metadata(weights)
    elif isinstance(weights, Mapping):
        sd = clean_state_dict(weights)
    else:
        raise UserError(f"weights must be a file path or a state dict, "
                        f"not {type(weights).__name__}")
    fmt = detect_format(sd)
    sd = convert(sd, model, fmt, strict=strict)
    _fit_classifier(model, sd, adapt)
    _fit_first_conv(model, sd, adapt)
    _match_source_conventions(model, fmt, meta)
    model.load_state_dict(sd, strict=strict)
    return model


def _fit_classifier(model: nn.Module, sd: dict[str, torch.Tensor], adapt: bool) -> None:
    ours = model.state_dict()
    if "classifier.weight" not in ours:  # feature extractor (num_classes=0): drop the head
        for k in _ADAPTABLE:
            sd.pop(k, None)
        return
    have, have_bias = sd.get("classifier.weight"), sd.get("classifier.bias")
    want = ours["classifier.weight"]
    if (have is None) != (have_bias is None):
        raise UserError("weights hold half a classifier: classifier.weight and classifier.bias "
                        "come together or not at all")
    if have is not None and (have.ndim != 2 or have_bias.shape != have.shape[:1]):
        raise UserError(f"weights' classifier has weight {tuple(have.shape)} and bias "
                        f"{tuple(have_bias.shape)}; expected (classes, features) and (classes,)")
    if have is not None and have.shape == want.shape:
        return
    if have is not None and have.shape[1:] != want.shape[1:] and not adapt:
        raise UserError(f"weights' classifier takes {have.shape[1]} features but the model's takes "
                        f"{want.shape[1]}")
    if not adapt:
        what = f"{have.shape[0]} classes" if have is not None else "no classifier"
        raise UserError(f"weights have {what} but the model has {want.shape[0]}; pass adapt=True "
                        f"(CLI: --adapt) to start a new classifier")
    model.reset_classifier(want.shape[0])
    for k in _ADAPTABLE:
        sd[k] = model.state_dict()[k]


def _fit_first_conv(model: nn.Module, sd: dict[str, torch.Tensor], adapt: bool) -> None:
    key = _first_conv_key(model)
    have, want = sd.get(key), model.state_dict()[key]
    if have is None or have.shape == want.shape:
        return
    if have.shape[0] != want.shape[0] or have.shape[2:] != want.shape[2:]:
        raise UserError(f"weights do not fit the model: {key} has shape {tuple(have.shape)} but "
                        f"the model needs {tuple(want.shape)}")
    if not adapt:
        raise UserError(f"weights take {have.shape[1]} input channels but the model has "
                        f"{want.shape[1]}; pass adapt=True (CLI: --adapt) to adapt the first conv")
    sd[key] = adapt_input_conv(have, want.shape[1])


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv kernel for another channel count, as timm does: 1 channel = sum over RGB (a gray
    image gives the response of its RGB copy); others repeat RGB and rescale by 3/in_chans."""
    dtype, w = weight.dtype, weight.float()
    have = w.shape[1]
    if in_chans == 1:
        if have % 3:
            raise UserError(f"cannot adapt a {have}-channel first conv to 1 channel")
        w = w.reshape(w.shape[0], have // 3, 3, *w.shape[2:]).sum(2)
    elif have == 3 or have == 1:
        w = w.repeat(1, math.ceil(in_chans / have), 1, 1)[:, :in_chans] * (have / in_chans)
    else:
        raise UserError(f"cannot adapt a {have}-channel first conv to {in_chans} channels")
    return w.to(dtype)


def _source_bn_eps(fmt: str, model: nn.Module, meta: Mapping[str, str]) -> float | None:
    if fmt == "lukemelas":
        return LUKEMELAS_BN_EPS
    if fmt == "torchvision":
        v2 = any(s.block == "fused" for s in model.spec.stages)
        if v2 or model.spec.name.removeprefix("tf_") in TORCHVISION_EPS_1E3_V1:
            return TORCHVISION_V2_BN_EPS
        return TORCHVISION_V1_BN_EPS
    if fmt == "effnet" and "config" in meta:
        return saved_config(meta).bn_eps
    if fmt == "effnet" and "bn_eps" in meta:  # files written before the config was saved
        return float(meta["bn_eps"])
    return None  # timm: tf_ weights use 1e-3, others 1e-5; only the model name tells


def _match_source_conventions(model: nn.Module, fmt: str, meta: Mapping[str, str]) -> None:
    eps = _source_bn_eps(fmt, model, meta)
    old = {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    if eps is not None and old != {eps}:
        model.set_bn_eps(eps)  # recorded in model.config, so the run saves and resumes with it
        warnings.warn(f"{fmt} weights were trained with BatchNorm eps {eps:g}; set it on every "
                      f"BatchNorm layer (was {', '.join(f'{e:g}' for e in sorted(old))})",
                      stacklevel=3)
    tf_source = fmt == "lukemelas" or meta.get("tf_padding") == "true" or (
        "config" in meta and saved_config(meta).tf_padding)
    if tf_source and not model.tf_padding:
        warnings.warn(f"{fmt} weights were trained with TensorFlow 'same' padding; build the tf_ "
                      f"model of this name for exact results", stacklevel=3)


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


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 200 else line[:197] + "..."
