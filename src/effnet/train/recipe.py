"""Training recipes as data: one frozen `Recipe` holds every knob of a run, and the rules for
changing one (`override`: every value checked and coerced to its field's type, one line naming a
bad one).

A run's recipe is built in layers, each overriding the last: a preset (train/presets.py), the
per-model values a preset asks for (SPEC C.3), a `--config FILE.yaml` (train/recipe_files.py), then
command-line flags. The result is printed at the start of the run and saved beside it as
`config.yaml`, which `--config` reads back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields, replace
from typing import Any

from ..arch.scaling import MAX_RESOLUTION
from ..errors import UserError
from ..nn.recompute import MODES as RECOMPUTE_MODES

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
    # the stem and this many stages keep their (pretrained) weights and BatchNorm statistics: no
    # backward pass through the highest-resolution layers (EfficientNet.set_frozen_stages)
    frozen_stages: int = 0
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
    # EMA of the weights and BN statistics (SPEC D.1). `ema_decay` is the decay per optimiser step
    # at a global batch of `ema_base_size` images (the papers: 0.9999 at 4096). At another global
    # batch B each step decays by ema_decay ** (B / ema_base_size), so the average spans as many
    # images as at the base batch (as the LR follows the batch); ema_base_size 0: ema_decay is
    # the decay per step at any batch.
    ema_decay: float = 0.9999  # 0 = no EMA
    ema_base_size: int = 4096
    ema_warmup: bool = True  # TF: decay min(step decay, (1 + t) / (10 + t))
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
    # what the backward pass recomputes instead of keeping (nn/recompute.py): "activations" keeps
    # only convolution outputs (Lite0 at batch 32, 224 px: 0.69x timm's peak memory, each step
    # 1.23x the time of "off" on a CPU; BENCHMARKS.md `memory`); "blocks" is timm's
    # --grad-checkpointing; "off" keeps everything. The numbers trained are the same in every mode.
    recompute: str = "activations"
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.opt not in OPTIMIZERS:
            problems.append(f"opt must be one of {', '.join(OPTIMIZERS)} (got {self.opt!r})")
        if self.sched not in SCHEDULES:
            problems.append(f"sched must be one of {', '.join(SCHEDULES)} (got {self.sched!r})")
        if self.wd_exclude not in WD_EXCLUDE:
            problems.append(f"wd_exclude must be one of {', '.join(WD_EXCLUDE)}")
        if self.recompute not in RECOMPUTE_MODES:
            problems.append(f"recompute must be one of {', '.join(RECOMPUTE_MODES)} "
                            f"(got {self.recompute!r})")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1 (got {self.batch_size})")
        if self.grad_accum < 1:
            problems.append(f"grad_accum must be >= 1 (got {self.grad_accum})")
        if self.epochs < 1 and self.steps < 1 or min(self.epochs, self.steps) < 0:
            problems.append("epochs (or steps) must be >= 1")
        if not self.lr > 0 or not self.head_lr_scale > 0:  # `not >` also refuses NaN
            problems.append(f"lr and head_lr_scale must be > 0 (got {self.lr}, {self.head_lr_scale})")
        if self.frozen_stages < 0:
            problems.append(f"frozen_stages must be >= 0 (got {self.frozen_stages})")
        if not 0 <= self.head_init_scale < float("inf"):
            problems.append(f"head_init_scale must be >= 0 (got {self.head_init_scale})")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"EMA decay must be in [0, 1) (got {self.ema_decay})")
        if self.ema_base_size < 0:
            problems.append(f"ema_base_size must be >= 0 (got {self.ema_base_size})")
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

    def ema_step_decay(self, global_batch: int) -> float:
        """The EMA's decay per optimiser step at this global batch: `ema_decay` per step at
        `ema_base_size` images, raised to global_batch / ema_base_size (0 when there is no EMA)."""
        if not self.ema_decay or not self.ema_base_size:
            return self.ema_decay
        return self.ema_decay ** (global_batch / self.ema_base_size)

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


# keys added after runs were saved -> the value a saved recipe without the key behaves as
# (before ema_base_size, ema_decay was the decay per step at any batch)
SAVED_BEFORE: dict[str, Any] = {"ema_base_size": 0}


def recipe_from_dict(d: dict[str, Any], source: str = "recipe") -> Recipe:
    """A run's saved recipe (its config.yaml), read as that run trained."""
    return override(Recipe(), {**SAVED_BEFORE, **d}, source)
