"""The network a recipe trains: a zoo model or spec file, scaled as the recipe says, with the
recipe's image sizes and regularisation written into its spec, and its initial weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..arch.scaling import scale, scale_compound
from ..arch.spec import NetSpec, Preprocess
from ..errors import UserError
from ..models import model_config, resolve
from ..nn.model import EfficientNet
from ..rundir import MODEL_FILE, RunDir
from .distributed import World
from .options import RunOptions
from .recipe import Recipe
from .runtime import seed_all


def make_spec(recipe: Recipe, preprocess: Preprocess | None = None) -> tuple[NetSpec, bool]:
    """The network a recipe names: a zoo model, compound-scaled by `phi` or scaled by width/depth
    multipliers, with the recipe's image sizes and regularisation written into the spec so that
    the saved spec rebuilds the same network and preprocessing. `preprocess`: that of the weights
    the run starts from, instead of the architecture's."""
    spec, tf = resolve(recipe.model)
    if preprocess is not None:
        spec = spec.with_(preprocess=preprocess)
    if recipe.phi is not None and (recipe.width is not None or recipe.depth is not None):
        raise UserError("give either --phi or --width/--depth, not both")
    try:
        if recipe.phi is not None:
            spec, _ = scale_compound(spec, recipe.phi)
        elif recipe.width is not None or recipe.depth is not None:
            w, d = recipe.width or 1.0, recipe.depth or 1.0
            if w <= 0 or d <= 0:
                raise ValueError(f"width and depth multipliers must be > 0 (got {w}, {d})")
            spec = scale(spec, width=w, depth=d, name=f"{spec.name}-w{w:g}-d{d:g}")
    except ValueError as e:
        raise UserError(str(e)) from None
    pre = spec.preprocess
    eval_size = recipe.eval_size or (recipe.img_size or pre.eval_size)
    train_size = recipe.img_size or (round(eval_size * recipe.train_size_ratio)
                                     if recipe.train_size_ratio != 1 else pre.train_size)
    spec = spec.with_(preprocess=dataclasses.replace(pre, train_size=train_size, eval_size=eval_size),
                      dropout=spec.dropout if recipe.dropout is None else recipe.dropout,
                      drop_path=spec.drop_path if recipe.drop_path is None else recipe.drop_path)
    return spec, tf


def build_model(recipe: Recipe, num_classes: int, weights: str | None = None,
                adapt: bool = False, pretrained: str | None = None) -> EfficientNet:
    """The recipe's network, with `weights` (a file) or `pretrained` (a published row, whose
    preprocessing and BN eps it takes; a new classifier for another class count) loaded."""
    row = None
    if pretrained is not None:
        from ..pretrained import resolve_pretrained

        if weights is not None:
            raise UserError("give either --weights or --pretrained, not both")
        row, path = resolve_pretrained(pretrained)
        if resolve(recipe.model)[0].name != row.model:
            raise UserError(f"--pretrained {row.tag} holds weights for {row.model}, "
                            f"not --model {recipe.model}")
        weights, adapt = str(path), True
    spec, _ = make_spec(recipe, row.preprocess if row is not None else None)
    bn_eps = recipe.bn_eps if recipe.bn_eps is not None else (row.bn_eps if row is not None else None)
    config = model_config(recipe.model, num_classes=num_classes, bn_eps=bn_eps,
                          bn_momentum=recipe.bn_momentum).with_(spec=spec)
    model = EfficientNet.from_config(config)
    initial_head = model.classifier
    if weights is not None:
        from ..weights import load_weights

        load_weights(model, weights, adapt=adapt)
    # a loaded head is kept; a new one (no weights, or --adapt to another class count) is scaled
    fresh_head = weights is None or model.classifier is not initial_head
    if recipe.head_init_scale != 1.0 and fresh_head and isinstance(model.classifier, nn.Linear):
        with torch.no_grad():
            model.classifier.weight.mul_(recipe.head_init_scale)
    return model


def training_module(model: nn.Module, world: World, compile: bool) -> tuple[nn.Module | None, nn.Module]:
    """(DDP wrapper or None, the module the training forward runs through). Call once the model
    holds its starting weights: DDP broadcasts rank 0's when it wraps."""
    ddp = None
    if world.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(model, device_ids=[world.device.index] if world.device.type == "cuda" else None)
    train_model = ddp or model
    return ddp, torch.compile(train_model) if compile else train_model


def run_network(recipe: Recipe, opts: RunOptions, num_classes: int, world: World,
                resume: tuple[RunDir, Path] | None = None) -> EfficientNet:
    """The network a run trains, on its device and in its memory format: the recipe's with its
    initial weights, or, resuming (run directory, checkpoint directory), the network that was
    trained (its saved config, BN settings of its weights included) with the checkpoint's weights."""
    from .checkpoint import load_weights_into

    seed_all(recipe.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    if resume is not None:
        model = EfficientNet.from_config(resume[0].model_config())
    else:
        model = build_model(recipe, num_classes, weights=opts.weights, adapt=opts.adapt,
                            pretrained=opts.pretrained)
    model.to(world.device)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    if resume is not None:
        load_weights_into(model, resume[1] / MODEL_FILE)
    return model
