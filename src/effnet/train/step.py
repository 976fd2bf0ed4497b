"""One optimiser step: forward under autocast, the loss, backward over `accum` micro-batches (DDP
all-reduces only on the last), then the LR of the step, gradient clipping, the GradScaler, the
update and EMA; and the checks that stop a run whose loss or weights stopped being numbers."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..devices import autocast
from ..errors import UserError
from ..rundir import RunDir
from .distributed import World, any_true
from .ema import ModelEma
from .optim import LRSchedule, set_lr


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last checkpoint is the last good state."""


def smoothed(targets: Tensor, label_smoothing: float) -> Tensor:
    """Soft targets (B, K) with label smoothing: targets * (1 - s) + s / K."""
    if label_smoothing <= 0:
        return targets
    return targets * (1.0 - label_smoothing) + label_smoothing / targets.shape[-1]


def cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy against int labels or soft targets (mixup/cutmix), label smoothing
    applied here and only here, the same way for both (torch's for int labels is `smoothed`)."""
    if not targets.dtype.is_floating_point:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    return torch.sum(-smoothed(targets, label_smoothing) * F.log_softmax(logits, dim=-1), dim=-1).mean()


class OptimStep:
    """`model` is the network (clipped, averaged by EMA, checked); `train_model` the module the
    forward runs through (DDP and/or torch.compile around `model`, or `model` itself)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
                 world: World, *, train_model: nn.Module | None = None, ddp=None,
                 ema: ModelEma | None = None, accum: int = 1, clip_grad: float = 0.0,
                 label_smoothing: float = 0.0, amp: str = "none"):
        self.model, self.train_model, self.ddp = model, train_model or model, ddp
        self.optimizer, self.schedule, self.world, self.ema = optimizer, schedule, world, ema
        self.accum, self.clip_grad, self.label_smoothing, self.amp = accum, clip_grad, label_smoothing, amp
        self.scaler = torch.amp.GradScaler(world.device.type, enabled=amp == "fp16")
        self.pending = 0  # micro-batches accumulated since the last update
        self.bad = torch.zeros((), dtype=torch.bool, device=world.device)  # a loss was not finite

    @property
    def boundary(self) -> bool:
        return self.pending == self.accum

    def accumulate(self, x: Tensor, y: Tensor) -> Tensor:
        """Forward and backward of one micro-batch; returns its (detached) loss."""
        last = self.pending + 1 == self.accum
        sync = self.ddp.no_sync() if (self.ddp is not None and not last) else nullcontext()
        with sync:
            with autocast(self.world.device, self.amp):
                logits = self.train_model(x)
            loss = cross_entropy(logits.float(), y, self.label_smoothing)
            self.scaler.scale(loss / self.accum).backward()
        self.pending += 1
        loss = loss.detach()
        self.bad |= ~torch.isfinite(loss)
        return loss

    def update(self, step: int) -> float:
        """Optimiser step number `step` (from 0) with the accumulated gradients; returns its LR."""
        lr = self.schedule(step)
        set_lr(self.optimizer, lr)
        if self.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.pending = 0
        return lr

    @torch.no_grad()
    def params_finite(self) -> Tensor:
        """Weights and BN statistics all finite (a saved state must evaluate to numbers)."""
        tensors = [p.detach() for p in self.model.parameters()]
        tensors += [b for b in self.model.buffers() if b.is_floating_point()]
        return torch.isfinite(torch.stack(torch._foreach_norm(tensors))).all()

    def check_finite(self, run: RunDir, epoch: int, step: int, params: bool = False) -> None:
        """TrainingDiverged on every rank when any rank saw a non-finite loss (or, with `params`,
        weights) since the run started; collective."""
        bad = self.bad | ~self.params_finite() if params else self.bad
        if not any_true(bool(bad.item()), self.world):
            return
        where = (f"the last good checkpoint is kept in {run}" if run.has_checkpoint()
                 else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"the loss became NaN/inf at epoch {epoch + 1}, step {step} "
            f"(lr {self.schedule(max(0, step - 1)):.3g}); training stopped and {where}; "
            f"lower --lr or try --amp bf16 / --clip-grad")
