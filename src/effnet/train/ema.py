"""Exponential moving average of the weights *and* BatchNorm statistics, as TF's
`ExponentialMovingAverage(decay, num_updates=global_step)` keeps it (SPEC D.1, G.6)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def tf_decay(decay: float, num_updates: torch.Tensor | int, warmup: bool = True):
    """TF's effective decay after `num_updates` optimiser steps: min(decay, (1+t)/(10+t))."""
    if not warmup:
        return decay
    t = num_updates.to(torch.float64) if isinstance(num_updates, torch.Tensor) else float(num_updates)
    warm = (1 + t) / (10 + t)
    return torch.clamp(warm, max=decay) if isinstance(warm, torch.Tensor) else min(decay, warm)


def _multi_avg_fn(decay: float, warmup: bool):
    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], num_updates: torch.Tensor):
        if not ema[0].is_floating_point():  # num_batches_tracked: a counter, not a quantity
            torch._foreach_copy_(ema, current)
            return
        d = tf_decay(decay, num_updates, warmup)
        if isinstance(d, torch.Tensor):
            d = d.to(ema[0].dtype)
        # ema = d * ema + (1 - d) * w, i.e. ema += (1 - d) * (w - ema)
        torch._foreach_mul_(ema, d)
        torch._foreach_add_(ema, torch._foreach_mul(current, 1 - d))

    return update


class ModelEma(AveragedModel):
    """`AveragedModel` over parameters and buffers with TF's decay. The copy made at construction
    (the initial weights) counts as the average so far, so the update after optimiser step t uses
    t = global step, exactly as TF does (its shadow variables start at the initial values)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        super().__init__(model, multi_avg_fn=_multi_avg_fn(decay, warmup), use_buffers=True)
        self.decay, self.warmup = decay, warmup
        self.n_averaged.fill_(1)
        self.requires_grad_(False)
        self.eval()

    def set_num_updates(self, t: int) -> None:
        self.n_averaged.fill_(t)
