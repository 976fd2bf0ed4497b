"""Batch-level MixUp / CutMix (torchvision.transforms.v2) returning soft targets."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms import v2

from ..errors import UserError


class BatchMixer:
    """(images float (B, C, H, W), labels int (B,)) -> (mixed images, soft targets (B, K)).

    Targets are the mixed one-hot labels; label smoothing belongs to the loss (train/step.py),
    for mixed and plain batches alike. torchvision's versions differ from the papers' TF code
    (SPEC F.3): one lambda per batch rather than per example, lambda is not folded to
    max(lambda, 1 - lambda), the partner is the batch rolled by one rather than reversed, and with
    both alphas > 0 each batch gets one of the two at random rather than mixup on its first half
    and CutMix on its second."""

    def __init__(self, num_classes: int, mixup_alpha: float, cutmix_alpha: float):
        self.num_classes = num_classes
        ops = []
        if mixup_alpha > 0:
            ops.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            ops.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.op = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        images, targets = self.op(images, labels.long())
        return torch.as_tensor(images), targets

    def __repr__(self) -> str:
        return f"BatchMixer({self.op!r})"


def batch_mixer(num_classes: int, mixup_alpha: float = 0.0,
                cutmix_alpha: float = 0.0) -> BatchMixer | None:
    """A BatchMixer, or None when both alphas are 0 (then integer labels go straight to the loss)."""
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise UserError(f"mixup/cutmix alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return None
    return BatchMixer(num_classes, mixup_alpha, cutmix_alpha)
