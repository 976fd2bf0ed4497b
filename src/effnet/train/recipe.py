"""Training recipes as data: one frozen `Recipe` holds every knob of a run.

A run's recipe is built in layers, each overriding the last: a preset (`PRESETS`), the per-model
values a preset asks for (SPEC C.3), a `--config FILE.yaml`, then command-line flags. The result is
printed at the start of the run and saved beside it as `config.yaml`, which `--config` reads back.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..arch.scaling import MAX_RESOLUTION
from ..errors import UserError, error_line

OPTIMIZERS = ("rmsproptf", "rmsprop", "adamw", "sgd")
SCHEDULES = ("step", "cosine", "constant")
WD_EXCLUDE = ("bn", "bn_bias", "none")


@dataclass(frozen=True)
class Recipe:
    """Every hyper-parameter of a run. `None` means "the model's own value" (its spec's dropout,
    stochastic depth, BN settings and image sizes)."""

    name: str = "custom"
    # model: a zoo name, optionally compound-scaled (`phi`) or scaled by explicit multipliers
    model: str = "efficientnet_b0"
    phi: float | None = None
    width: float | None = None
    depth: float | None = None
    # optimiser. Weight decay is a coupled L2 term (wd * w added to the gradient, as TF's
    # `wd * sum(w^2)/2` loss does, SPEC G.5) for rmsproptf/rmsprop/sgd, and decoupled for adamw.
    opt: str = "rmsproptf"
    lr: float = 0.016  # per `lr_base_size` images of global batch; lr_base_size 0: absolute
    lr_base_size: int = 256
    momentum: float = 0.9
    opt_decay: float = 0.9  # RMSProp's rho (TF `decay`); AdamW's beta2 is `opt_beta2`
    opt_eps: float = 1e-3
    opt_beta2: float = 0.999
    weight_decay: float = 1e-5
    wd_exclude: str = "bn"  # bn: V1 (biases decayed); bn_bias: V2 (no bias, no BN); none
    clip_grad: float = 0.0  # max global grad norm; 0 = off
    head_lr_scale: float = 1.0  # the classifier's LR / the schedule's LR (a new head learns faster)
    # a freshly initialised classifier's weights times this (a loaded head is kept). The papers'
    # init, uniform +-1/sqrt(classes), suits 1000 classes; at 10 it starts with logits of spread ~4
    # and a loss near 6.5 (ln 10 = 2.3), which short runs spend epochs unlearning. 0: a zero
    # head (BiT), as timm's head_init_scale scales ConvNeXt's.
    head_init_scale: float = 1.0
    # schedule (all counted in optimiser steps from 0, SPEC D.1)
    sched: str = "step"  # step: warmup + staircase exponential; cosine; constant
    epochs: int = 350
    steps: int = 0  # a fixed number of optimiser steps instead of epochs (fine-tuning)
    warmup_epochs: float = 5.0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    min_lr: float = 0.0  # cosine floor, as a fraction of the peak
    batch_size: int = 128  # per process (as timm's --batch-size); global = this * world * accum
    grad_accum: int = 1
    # regularisation
    label_smoothing: float = 0.1
    dropout: float | None = None
    drop_path: float | None = None
    bn_momentum: float | None = None  # PyTorch sense: 1 - TF momentum (SPEC G.1)
    bn_eps: float | None = None
    ema_decay: float = 0.9999  # 0 = no EMA
    ema_warmup: bool = True  # TF: decay min(ema_decay, (1 + t) / (10 + t))
    # data and augmentation
    img_size: int | None = None
    eval_size: int | None = None
    train_size_ratio: float = 1.0  # without img_size: train at this fraction of the eval size
    randaug_magnitude: float | None = None  # None = no RandAugment
    randaug_ops: int = 2
    mixup: float = 0.0
    cutmix: float = 0.0
    hflip: bool = True
    scale: tuple[float, float] | None = (0.08, 1.0)  # random-resized-crop area; None: plain resize
    cutout: bool = False
    per_model_aug: bool = False  # fill RandAugment / mixup / cutmix from SPEC C.3 for V2 models
    # progressive learning (V2 Algorithm 1): a preset (`v2-s`, `v2-s-code`, ...) optionally with
    # changes (`v2-s,stages=3`), or a whole plan (`stages=4,size=128:300,randaug=5:15,dropout=0.1:0.3`)
    progressive: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.opt not in OPTIMIZERS:
            problems.append(f"opt must be one of {', '.join(OPTIMIZERS)} (got {self.opt!r})")
        if self.sched not in SCHEDULES:
            problems.append(f"sched must be one of {', '.join(SCHEDULES)} (got {self.sched!r})")
        if self.wd_exclude not in WD_EXCLUDE:
            problems.append(f"wd_exclude must be one of {', '.join(WD_EXCLUDE)}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1 (got {self.batch_size})")
        if self.grad_accum < 1:
            problems.append(f"grad_accum must be >= 1 (got {self.grad_accum})")
        if self.epochs < 1 and self.steps < 1 or min(self.epochs, self.steps) < 0:
            problems.append("epochs (or steps) must be >= 1")
        if not self.lr > 0 or not self.head_lr_scale > 0:  # `not >` also refuses NaN
            problems.append(f"lr and head_lr_scale must be > 0 (got {self.lr}, {self.head_lr_scale})")
        if not 0 <= self.head_init_scale < float("inf"):
            problems.append(f"head_init_scale must be >= 0 (got {self.head_init_scale})")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"EMA decay must be in [0, 1) (got {self.ema_decay})")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label smoothing must be in [0, 1) (got {self.label_smoothing})")
        for name in ("dropout", "drop_path"):
            v = getattr(self, name)
            if v is not None and not 0 <= v < 1:
                problems.append(f"{name} must be in [0, 1) (got {v})")
        for name in ("img_size", "eval_size"):
            v = getattr(self, name)
            if v is not None and not 8 <= v <= MAX_RESOLUTION:
                problems.append(f"{name} must be 8 to {MAX_RESOLUTION} pixels (got {v})")
        if not 0.25 <= self.train_size_ratio <= 1:
            problems.append(f"train_size_ratio must be in [0.25, 1] (got {self.train_size_ratio})")
        if min(self.mixup, self.cutmix) < 0:
            problems.append("mixup and cutmix alphas must be >= 0")
        if self.scale is not None and (len(self.scale) != 2
                                       or not 0 < self.scale[0] <= self.scale[1] <= 1):
            problems.append(f"scale must be (min, max) with 0 < min <= max <= 1 (got {self.scale})")
        if problems:
            raise UserError("bad recipe: " + "; ".join(problems))

    # --- lr ----------------------------------------------------------------------------------
    def peak_lr(self, global_batch: int) -> float:
        """The linear-scaling rule: `lr` per `lr_base_size` images (SPEC D.1)."""
        return self.lr * global_batch / self.lr_base_size if self.lr_base_size else self.lr

    # --- dict / yaml -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scale"] = None if self.scale is None else list(self.scale)
        return d

    def describe(self) -> str:
        """Aligned `key: value` lines, printed at the start of a run."""
        d = self.to_dict()
        width = max(map(len, d))
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in d.items())


FIELD_TYPES = {f.name: f.type for f in fields(Recipe)}


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("expected a finite number")
    return x


def _coerce(key: str, value: Any) -> Any:
    """A YAML/JSON/CLI value as the field's type, with one clear line when it does not fit."""
    kind = str(FIELD_TYPES[key])
    if isinstance(value, str) and value.strip().lower() in ("none", "null", "") and "None" in kind:
        value = None
    if value is None:
        if "None" in kind:
            return None
        raise UserError(f"recipe key {key!r} cannot be empty")
    try:
        if kind.startswith("tuple"):
            if isinstance(value, str) and value.lower() == "resize":
                return None
            if isinstance(value, str):
                value = [v for v in value.replace(":", ",").split(",") if v.strip()]
            out = tuple(_finite(float(v)) for v in value)
            if len(out) != 2:
                raise ValueError("expected two numbers")
            return out
        if kind.startswith("bool"):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError("expected true or false")
                return value.lower() in ("true", "1", "yes", "on")
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected a whole number")
            return int(value)
        if kind.startswith("float"):
            return _finite(float(value))
        return str(value)
    except (TypeError, ValueError) as e:
        raise UserError(f"recipe key {key!r}: cannot use {value!r} ({e})") from None


def override(recipe: Recipe, changes: dict[str, Any], source: str = "overrides") -> Recipe:
    """A copy of `recipe` with `changes` applied (unknown keys are an error naming `source`)."""
    unknown = sorted(set(changes) - set(FIELD_TYPES))
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(k, FIELD_TYPES, n=1) for k in unknown]
        hint = "".join(f" (did you mean {h[0]!r}?)" for h in hints if h)
        raise UserError(f"{source}: unknown recipe key(s) {', '.join(map(repr, unknown))}{hint}")
    return replace(recipe, **{k: _coerce(k, v) for k, v in changes.items()})


def recipe_from_dict(d: dict[str, Any], source: str = "recipe") -> Recipe:
    return override(Recipe(), d, source)


def read_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON config file; a run's `config.yaml` holds it under `recipe`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such config file: {path}")
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix != ".json" else json.loads(
            path.read_text())
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"cannot parse config file {path}: {error_line(e)}") from None
    if data is None:
        data = {}
    if isinstance(data, dict) and isinstance(data.get("recipe"), dict):
        data = data["recipe"]
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UserError(f"config file {path} must hold a mapping of recipe keys")
    return dict(data)


# --- per-model values (SPEC C.3: AML efficientnetv2_params; B0-B3 use AutoAugment in the code,
# which effnet.data does not provide, so they train without a policy here) ----------------------
V2_AUG = {  # final RandAugment magnitude, final mixup alpha (= cutmix alpha in the code)
    "efficientnetv2_s": (10.0, 0.0),
    "efficientnetv2_m": (15.0, 0.2),
    "efficientnetv2_l": (20.0, 0.5),
    "efficientnetv2_xl": (20.0, 0.5),
}


def for_model(recipe: Recipe) -> Recipe:
    """Fill the per-model values a preset asks for (`per_model_aug`) from the recipe's model."""
    if not recipe.per_model_aug:
        return recipe
    base = recipe.model.removeprefix("tf_")
    if base not in V2_AUG:
        return recipe
    ra, mix = V2_AUG[base]
    return replace(recipe, randaug_magnitude=ra, mixup=mix, cutmix=mix)


# --- presets -----------------------------------------------------------------------------------
PAPER_V1 = Recipe(
    # SPEC D.1, the TPU code: TF1 RMSProp (decay 0.9, momentum 0.9, eps 1e-3 inside the sqrt),
    # 0.016 per 256 images, 5 warmup epochs, x0.97 every 2.4 epochs staircase on the global step
    # from 0, coupled L2 1e-5 on every non-BN variable (biases included), EMA 0.9999 with the
    # (1+t)/(10+t) warmup over weights and BN statistics, label smoothing 0.1, survival 0.8,
    # the variant's dropout, BN momentum 0.99 (TF) = 0.01 (PyTorch), eps 1e-3.
    # The paper trained at a global batch of 4096 on TPUs; here batch_size is per process and the
    # LR follows the global batch (batch_size * processes * grad_accum) linearly.
    name="paper-v1",
    bn_momentum=0.01,
    bn_eps=1e-3,
)

PAPER_V2 = replace(
    PAPER_V1,
    # SPEC D.2: as V1 but the code excludes `.*(bias|gamma|beta).*` from weight decay; RandAugment
    # and mixup/cutmix at the per-model final values of SPEC C.3 (no progressive stages here).
    # BN momentum: the paper says 0.99 (TF) = 0.01 (PyTorch); the released code uses 0.9 (= 0.1).
    name="paper-v2",
    wd_exclude="bn_bias",
    per_model_aug=True,
)

FINETUNE = Recipe(
    # Fine-tuning published ImageNet weights on a user's images: a few thousand of them and a few
    # epochs as often as the paper's 10,000 steps at batch 512 (SPEC D.3). Each choice and why:
    # - AdamW 1e-3 per 32 images, decoupled weight decay 0.01, cosine to 0: timm's fine-tuning
    #   defaults, which learn in a few hundred steps. The paper's batch 512 with TF RMSProp (mean
    #   square starting at 1) left a 2-epoch run on 5,784 images 22 tiny steps: 1.6 % top-1 where
    #   timm reached 88 % (REVIEW.md). The LR still scales linearly with the global batch.
    # - Batch 32, no accumulation: enough optimiser steps in a short run.
    # - The new classifier learns 10x faster than the pretrained body (`head_lr_scale`, the
    #   discriminative fine-tuning of Howard & Ruder 2018), so the head catches up within an epoch.
    # - A short warmup (10 % of an epoch) keeps the random head's first gradients from wrecking
    #   the pretrained features.
    # - No EMA: at a few hundred steps an EMA of 0.9996 still averages in the early weights; only
    #   the raw weights are evaluated, once per epoch.
    # - Random-resized crops of 25-100 % of the image and flips (timm crops down to 8 %, which
    #   destroys small images upsampled to the model's size); evaluation at the weights' own eval
    #   size and crop (the preprocessing travels with the weights).
    # - Train at 7/8 of the eval size (`train_size_ratio`): the train-test resolution discrepancy
    #   (Touvron et al. 2019, FixRes) makes a random-resized-crop model see objects larger in
    #   training than at test time, so a lower train size costs nothing at test time and trains
    #   ~1.3x faster per image.
    # - Drop path and dropout: the model's own; label smoothing 0.1 (both papers).
    name="finetune",
    model="efficientnetv2_s",
    opt="adamw",
    lr=1e-3,
    lr_base_size=32,
    opt_eps=1e-8,
    weight_decay=0.01,
    wd_exclude="bn_bias",
    head_lr_scale=10.0,
    sched="cosine",
    epochs=5,
    warmup_epochs=0.1,
    batch_size=32,
    ema_decay=0.0,
    bn_momentum=None,  # fine-tuning keeps the BN conventions of the model the weights come from
    bn_eps=None,
    scale=(0.25, 1.0),
    train_size_ratio=0.875,
)

FINETUNE_PAPER = Recipe(
    # SPEC D.3 V2 transfer learning, for large target sets. The PAPER's values where it states
    # them (batch 512, lr 0.001 with cosine decay, 10,000 steps, no weight decay, cutout); the
    # code's values where the paper is silent (EMA 0.9996, label smoothing 0.1, 1 warmup epoch,
    # survival 0.8, train size = eval size). The code instead uses a constant LR and weight decay
    # 1e-5. Global batch 512 = 64 per process x 8 accumulation steps on one device; lr 0.001 per
    # 512 images, so it scales linearly when more processes raise the global batch.
    name="finetune-paper",
    model="efficientnetv2_s",
    opt="rmsproptf",
    lr=0.001,
    lr_base_size=512,
    batch_size=64,
    grad_accum=8,
    sched="cosine",
    epochs=1,
    steps=10_000,
    warmup_epochs=1.0,
    weight_decay=0.0,
    wd_exclude="bn_bias",
    ema_decay=0.9996,
    scale=None,  # the `ft` pipeline resizes without cropping
    cutout=True,
)

QUICK = Recipe(
    # Small data on a CPU in a few minutes (the demo: built-in digits at 32 px, a phi=-4 B0 of
    # 1.0 M parameters): AdamW with cosine decay after one warmup epoch, and a short EMA (0.97:
    # a horizon of ~1.5 epochs at 22 steps per epoch). Digits are not mirror-symmetric, so no
    # flip, and crops keep 80-100 % of the image. No label smoothing: tuned on digits, it cost
    # ~2 points at this length. Reaches ~97 % val top-1 in 20 epochs (BENCHMARKS.md).
    name="quick",
    model="efficientnet_b0",
    phi=-4.0,
    opt="adamw",
    lr=6e-3,
    lr_base_size=0,
    opt_eps=1e-8,
    weight_decay=0.05,
    wd_exclude="bn_bias",
    sched="cosine",
    epochs=20,
    warmup_epochs=1.0,
    batch_size=64,
    label_smoothing=0.0,
    dropout=0.1,
    drop_path=0.05,
    bn_momentum=None,
    bn_eps=None,
    ema_decay=0.97,
    img_size=32,
    eval_size=32,
    hflip=False,
    scale=(0.8, 1.0),
)

SHORT = replace(
    # A few epochs on a few thousand natural images (CIFAR-10 subsets: the benchmarks, and a
    # proxy for searches): `quick` tuned to learn fast rather than to generalise. Probes on
    # CIFAR-10 (benchmarks/train_cifar10.py docstring): a zero head gained ~8 points in 4 epochs
    # over the papers' head init; dropout, stochastic depth and a 1-epoch warmup only slowed runs
    # that are nowhere near overfitting; EMA over a few hundred steps tracks the raw weights and
    # doubles evaluation time; batch 64 at lr 4e-3 beat batch 32 at 2e-3.
    QUICK,
    name="short",
    lr=4e-3,
    warmup_epochs=0.3,
    dropout=0.0,
    drop_path=0.0,
    ema_decay=0.0,
    hflip=True,
    head_init_scale=0.0,
)

PRESETS: dict[str, Recipe] = {r.name: r for r in (PAPER_V1, PAPER_V2, FINETUNE, FINETUNE_PAPER, QUICK,
                                                  SHORT)}
DEFAULT_RECIPE = "quick"


def get_recipe(name: str) -> Recipe:
    if name not in PRESETS:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
