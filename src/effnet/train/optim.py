"""Optimisers and learning-rate schedules of the recipes.

`RMSpropTF` is TensorFlow 1's RMSProp, which every EfficientNet paper result was trained with.
`torch.optim.RMSprop` differs from it in three ways (SPEC D.1, G.4; timm's RMSpropTF lists the same):
  1. eps: TF adds it *inside* the square root, sqrt(ms + eps); PyTorch outside, sqrt(v) + eps.
     With eps = 1e-3 that is a floor of ~0.03 on the denominator instead of 0.001.
  2. the mean-square slot starts at 1 in TF (`ones_initializer`), at 0 in PyTorch, so PyTorch's
     first steps are ~1/sqrt(1 - rho) = 3.2x larger.
  3. TF folds the LR into the momentum buffer (mom = mu*mom + lr*g/rms; w -= mom); PyTorch keeps
     buf = mu*buf + g/rms and applies w -= lr*buf, so a changed LR rescales the whole buffer at once
     instead of only the new gradient; the two part ways on every LR change (warmup, decay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .plan import Progress
from .recipe import Recipe


class RMSpropTF(torch.optim.Optimizer):
    """TF1 RMSProp: ms = rho*ms + (1-rho)*g^2 (ms starts at 1); mom = mu*mom + lr*g/sqrt(ms + eps);
    w -= mom. `weight_decay` adds wd*w to the gradient first (a coupled L2 loss term)."""

    def __init__(self, params, lr: float = 0.016, alpha: float = 0.9, eps: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 0.0):
        if lr < 0 or eps < 0 or not 0 <= alpha < 1 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid RMSpropTF settings lr={lr} alpha={alpha} eps={eps} "
                             f"momentum={momentum} weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                raise RuntimeError("RMSpropTF does not support sparse gradients")
            ms, mom = [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                ms.append(state["square_avg"])
                mom.append(state["momentum_buffer"])
            lr, rho, eps, mu, wd = (group[k] for k in ("lr", "alpha", "eps", "momentum", "weight_decay"))
            if wd:
                grads = torch._foreach_add(grads, params, alpha=wd)
            torch._foreach_mul_(ms, rho)
            torch._foreach_addcmul_(ms, grads, grads, value=1 - rho)
            rms = torch._foreach_add(ms, eps)
            torch._foreach_sqrt_(rms)
            if mu > 0:
                torch._foreach_mul_(mom, mu)
                torch._foreach_addcdiv_(mom, grads, rms, value=lr)
                torch._foreach_sub_(params, mom)
            else:
                torch._foreach_addcdiv_(params, grads, rms, value=-lr)
        return loss


# --- parameter groups and the optimiser of a recipe -------------------------------------------
def _is_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float, exclude: str,
                 head_lr_scale: float = 1.0) -> list[dict]:
    """Split parameters into decayed and not decayed. `exclude`: "bn" (V1: every variable except
    BN gamma/beta, biases included), "bn_bias" (V2: no biases and no BN), "none".
    With `head_lr_scale` != 1 the classifier's parameters get their own groups whose LR is the
    schedule's times that scale (timm's `lr_scale` group key, read by `set_lr`)."""
    head = set(model.get_classifier().parameters()) if head_lr_scale != 1 else set()
    buckets: dict[tuple[bool, bool], list] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            skip = (exclude in ("bn", "bn_bias") and _is_bn(module)) or (
                exclude == "bn_bias" and name == "bias")
            buckets.setdefault((not skip and weight_decay > 0, p in head), []).append(p)
    return [{"params": ps, "weight_decay": weight_decay if decayed else 0.0,
             "lr_scale": head_lr_scale if in_head else 1.0}
            for (decayed, in_head), ps in sorted(buckets.items(), key=lambda kv: (not kv[0][0], kv[0][1]))]


def build_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay, recipe.wd_exclude, recipe.head_lr_scale)
    if recipe.opt == "rmsproptf":
        return RMSpropTF(groups, lr=lr, alpha=recipe.opt_decay, eps=recipe.opt_eps,
                         momentum=recipe.momentum)
    if recipe.opt == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=recipe.opt_decay, eps=recipe.opt_eps,
                                   momentum=recipe.momentum)
    # torch's fused kernels: one pass per tensor instead of ~10 small ops each, which on a CPU cost
    # a fine-tune of Lite0 ~12 % of its time (and 6x the step time of the fused AdamW when the
    # cores are shared); torch picks the unfused for-loop on a CPU unless asked
    if recipe.opt == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(recipe.momentum, recipe.opt_beta2),
                                 eps=recipe.opt_eps, fused=True)
    if recipe.opt == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0,
                               fused=True)
    raise AssertionError(recipe.opt)


# --- learning-rate schedules ------------------------------------------------------------------
@dataclass(frozen=True)
class LRSchedule:
    """The LR as a pure function of the optimiser step (0 for the first update), as TPU
    `utils.build_learning_rate` computes it: the decay runs on the global step from 0, and a linear
    warmup `peak * step / warmup_steps` replaces it while step < warmup_steps (so step 0 trains with
    LR 0, and the step-schedule LR jumps to `peak * 0.97^k` when warmup ends, SPEC D.1)."""

    kind: str
    peak: float
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int = 0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    min_lr: float = 0.0  # cosine floor, fraction of peak
    progress: Progress | None = None  # where the cosine is; None: step / total_steps (plan.py)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak * step / self.warmup_steps
        if self.kind == "step":
            decay_steps = self.steps_per_epoch * self.decay_epochs
            return self.peak * self.decay_rate ** math.floor(step / decay_steps)
        if self.kind == "cosine":
            t = (self.progress or Progress.of(self.total_steps))(step)
            floor = self.peak * self.min_lr
            return floor + (self.peak - floor) * 0.5 * (1 + math.cos(math.pi * t))
        return self.peak

    def curve(self) -> list[float]:
        return [self(s) for s in range(self.total_steps)]


def build_schedule(recipe: Recipe, peak: float, steps_per_epoch: int, total_steps: int,
                   progress: Progress | None = None) -> LRSchedule:
    return LRSchedule(kind=recipe.sched, peak=peak, steps_per_epoch=steps_per_epoch,
                      total_steps=total_steps,
                      warmup_steps=int(recipe.warmup_epochs * steps_per_epoch),
                      decay_rate=recipe.decay_rate, decay_epochs=recipe.decay_epochs,
                      min_lr=recipe.min_lr, progress=progress)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)

