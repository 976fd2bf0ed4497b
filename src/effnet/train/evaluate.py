"""Top-1 / top-5 / loss of a model over a dataset, sharded over ranks without padding so every
image counts exactly once."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..devices import autocast
from .distributed import World, all_sum
from .metrics import topk_correct


def eval_loader(dataset: Dataset, batch_size: int, workers: int, world: World) -> DataLoader:
    shard = Subset(dataset, range(world.rank, len(dataset), world.size)) if world.enabled else dataset
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=world.device.type == "cuda")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, world: World, amp: str = "none",
             channels_last: bool = False,
             keep: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> dict[str, float]:
    """{"loss", "top1", "top5" (percent), "images"} over all ranks' shards. `keep(logits, labels)`
    sees each batch's float32 logits as they were scored (the run report's per-image numbers)."""
    was_training = model.training
    model.eval()
    dev = world.device
    totals = torch.zeros(4, dtype=torch.float64, device=dev)  # loss sum, top1, top5, count
    for images, labels in loader:
        images = images.to(dev, non_blocking=True)
        labels = labels.to(dev, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(dev, amp):
            logits = model(images)
        logits = logits.float()
        if keep is not None:
            keep(logits, labels)
        t1, t5 = topk_correct(logits, labels, (1, 5))
        totals += torch.tensor([F.cross_entropy(logits, labels, reduction="sum").item(), t1, t5,
                                labels.numel()], dtype=torch.float64, device=dev)
    all_sum(totals, world)
    model.train(was_training)
    n = max(1.0, float(totals[3]))
    return {"loss": float(totals[0]) / n, "top1": 100.0 * float(totals[1]) / n,
            "top5": 100.0 * float(totals[2]) / n, "images": int(totals[3])}


def evaluate_run(model: nn.Module, ema: nn.Module | None, loader: DataLoader, world: World,
                 amp: str = "none", channels_last: bool = False) -> tuple[dict, float, str]:
    """(metrics row of the model and its EMA, the better top-1, "model" or "ema": whose)."""
    val = evaluate(model, loader, world, amp, channels_last)
    row = {"val_loss": val["loss"], "top1": val["top1"], "top5": val["top5"]}
    if ema is None:
        return row, val["top1"], "model"
    ev = evaluate(ema, loader, world, amp, channels_last)
    row.update(ema_val_loss=ev["loss"], ema_top1=ev["top1"], ema_top5=ev["top5"])
    return (row, *((ev["top1"], "ema") if ev["top1"] > val["top1"] else (val["top1"], "model")))
