"""Training: recipes as data, TF-faithful optimiser/schedule/EMA, the loop, checkpoints."""

from .ema import ModelEma
from .network import build_model, recipe_config
from .optim import LRSchedule, RMSpropTF, build_optimizer, build_schedule, param_groups
from .options import RunOptions
from .presets import PRESETS, get_recipe
from .recipe import Recipe, override
from .step import TrainingDiverged
from .trainer import Trainer, train

__all__ = [
    "PRESETS", "LRSchedule", "ModelEma", "RMSpropTF", "Recipe", "RunOptions", "Trainer",
    "TrainingDiverged", "build_model", "build_optimizer", "build_schedule", "get_recipe",
    "override", "param_groups", "recipe_config", "train",
]
