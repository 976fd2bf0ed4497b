"""Conversion: map a state dict's keys onto effnet's modules (by the per-source rows), check every
shape, and load it into a model, adapting the classifier or the first conv on request."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from ..arch.spec import NetSpec
from ..errors import EffnetWarning, UserError
from ..nn.layers import SqueezeExcite
from .files import clean_state_dict, load_state_dict_file, read_metadata
from .sources import detect_format, source

_ADAPTABLE = ("classifier.weight", "classifier.bias")  # plus the first conv's weight


def module_map(model: nn.Module, fmt: str) -> dict[str, str]:
    """effnet module path -> source module path for every weighted module of `model`."""
    if fmt == "effnet":
        return {name: name for name, m in model.named_modules() if not list(m.children())}
    src = source(fmt)
    name = model.spec.name
    if model.spec.stem.kind != "conv":
        raise UserError(f"{fmt} has no weights for {name} (its stem is {model.spec.stem.kind!r})")
    out = src.top_map(len(model.stages))
    index = 0
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage):
            keys = src.blocks.get(block.layout)
            if keys is None:
                raise UserError(f"{fmt} weights cannot hold {name}: it has no {block.layout} block "
                                f"(stage {i} block {j})")
            prefix = src.prefix(i, j, index)
            has_se = isinstance(block.se, SqueezeExcite)
            for ours, theirs in keys.items():
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


def source_bn_eps(fmt: str, model: nn.Module | NetSpec, meta: Mapping[str, str]) -> float | None:
    """BatchNorm eps the weights of `fmt` (with file metadata `meta`) were trained with for the
    architecture of `model` (a model or its spec); None where the source does not say (timm).
    The one rule: the model factory builds published weights' networks with it, `load_weights`
    sets it when a file's source differs from the model."""
    return source(fmt).bn_eps(model if isinstance(model, NetSpec) else model.spec, meta)


def _match_source_conventions(model: nn.Module, fmt: str, meta: Mapping[str, str]) -> None:
    eps = source_bn_eps(fmt, model, meta)
    old = {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    if eps is not None and old != {eps}:
        model.set_bn_eps(eps)  # recorded in model.config, so the run saves and resumes with it
        warnings.warn(f"{fmt} weights were trained with BatchNorm eps {eps:g}; set it on every "
                      f"BatchNorm layer (was {', '.join(f'{e:g}' for e in sorted(old))})",
                      EffnetWarning, stacklevel=3)
    if source(fmt).tf_padding(meta) and not model.tf_padding:
        warnings.warn(f"{fmt} weights were trained with TensorFlow 'same' padding; build the tf_ "
                      f"model of this name for exact results", EffnetWarning, stacklevel=3)
