"""The network a recipe trains: the recipe's model, scaling, regularisation, BN settings, image
sizes and head init handed to the one model factory (effnet.models.make_model), with the run's
initial weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..arch.config import ModelConfig
from ..data.config import DataOverrides
from ..errors import UserError
from ..models import make_model, plan_model
from ..nn.model import EfficientNet
from ..rundir import MODEL_FILE, RunDir
from .distributed import World
from .options import RunOptions
from .recipe import Recipe
from .runtime import seed_all


def recipe_data(recipe: Recipe) -> DataOverrides:
    """The image sizes a recipe sets (the "recipe" level of effnet.data.config): `img_size` trains
    at that size and evaluates there too unless `eval_size` says otherwise; without `img_size`,
    `train_size_ratio` trains below the eval size."""
    ratio = recipe.train_size_ratio if recipe.train_size_ratio != 1 else None
    return DataOverrides(train_size=recipe.img_size, eval_size=recipe.eval_size or recipe.img_size,
                         train_size_ratio=ratio)


def recipe_options(recipe: Recipe) -> dict:
    """What a recipe asks of the model factory (effnet.models.plan_model's options): scaling by
    phi or width/depth, dropout and stochastic depth, BN settings and image sizes (None: the
    model's own)."""
    return {"phi": recipe.phi, "width": recipe.width, "depth": recipe.depth,
            "dropout": recipe.dropout, "drop_path": recipe.drop_path, "bn_eps": recipe.bn_eps,
            "bn_momentum": recipe.bn_momentum, "data": recipe_data(recipe)}


def recipe_config(recipe: Recipe) -> ModelConfig:
    """The config of the network a recipe trains from scratch (spec, BN settings, preprocessing)."""
    return plan_model(recipe.model, **recipe_options(recipe)).config


def build_model(recipe: Recipe, num_classes: int, weights: str | None = None,
                adapt: bool = False, pretrained: str | None = None) -> EfficientNet:
    """The recipe's network with `weights` (a file) or `pretrained` (a published row, whose
    preprocessing and BN eps it takes; a new classifier for another class count) loaded. The
    saved config records the recipe's image sizes and regularisation, so it rebuilds the network
    and preprocessing that were trained."""
    return make_model(recipe.model, num_classes=num_classes, weights=weights, adapt=adapt,
                      pretrained=pretrained or False, head_init_scale=recipe.head_init_scale,
                      **recipe_options(recipe))


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
    if resume is not None:  # the checkpoint's weights are loaded below, exactly
        model = make_model(resume[0].model_config())
    else:
        model = build_model(recipe, num_classes, weights=opts.weights, adapt=opts.adapt,
                            pretrained=opts.pretrained)
    model.set_recompute(opts.recompute or recipe.recompute)
    if recipe.frozen_stages > len(model.stages):
        raise UserError(f"frozen_stages {recipe.frozen_stages}: {recipe.model} has "
                        f"{len(model.stages)} stages")
    model.set_frozen_stages(recipe.frozen_stages)
    model.to(world.device)
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    if resume is not None:
        load_weights_into(model, resume[1] / MODEL_FILE)
    return model
