"""The training data of a run, epoch by epoch: the splits it trains and validates on, and for each
epoch the shuffled, augmented, mixed batches on the device, replayable from any batch.

Progressive learning changes the image size, RandAugment magnitude and mixup/cutmix between
epochs through `set_stage`; the next epoch's DataLoader picks the new transform up (its workers
copy the dataset when it starts)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..arch.preprocess import Preprocess
from ..errors import UserError
from .distributed import World
from .evaluate import eval_loader
from .options import RunOptions
from .recipe import Recipe
from .sampling import EpochSampler, SeededSamples, loader_generator


def _subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(dataset):
        return dataset
    from ..data import Split

    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    return Split(dataset, sorted(order.tolist()))


def load_splits(opts: RunOptions, recipe: Recipe) -> tuple[Dataset, Dataset, list[str], int]:
    """(train, val, class names, classes the model has) of `--data`, cut to `--train-subset` /
    `--val-subset`."""
    from ..data import load_data

    splits = load_data(opts.data, val_split=opts.val_split, download=opts.download,
                       strict=opts.strict, seed=recipe.seed)
    splits.require_two_classes()
    train = _subset(splits.train, opts.train_subset, recipe.seed)
    val = _subset(splits.val, opts.val_subset, recipe.seed + 1)
    if len(train) == 0 or len(val) == 0:
        raise UserError(f"{splits.name}: the {'train' if not len(train) else 'val'} split is empty")
    n_classes = opts.num_classes or len(splits.classes)
    if n_classes < len(splits.classes):
        raise UserError(f"--num-classes {n_classes} is fewer than the {len(splits.classes)} "
                        f"classes in {splits.name}")
    return train, val, list(splits.classes), n_classes


def eval_data(val_set: Dataset, preprocess: Preprocess, batch_size: int, workers: int,
              world: World) -> tuple[Dataset, DataLoader]:
    """The val split at the eval size, and the loader of this rank's shard of it."""
    from ..data import Transformed, eval_transform

    data = Transformed(val_set, eval_transform(preprocess, preprocess.eval_size))
    return data, eval_loader(data, batch_size, workers, world)


def steps_per_epoch(images: int, recipe: Recipe, world: World) -> int:
    """Optimiser steps in an epoch: every rank gets whole micro-batches of the same count."""
    steps = images // (recipe.batch_size * world.size) // recipe.grad_accum
    if steps < 1:
        raise UserError(f"the training set has {images} images, fewer than one global batch of "
                        f"{recipe.batch_size * world.size * recipe.grad_accum} (batch size x "
                        f"processes x grad-accum); lower --batch-size")
    return steps


class EpochData:
    """Sample i of epoch e is always the same image, augmented the same way, on whatever rank
    and worker loads it (sampling.py), so a resumed epoch can skip the batches already done."""

    def __init__(self, train_set: Dataset, preprocess: Preprocess, recipe: Recipe,
                 num_classes: int, world: World, workers: int, channels_last: bool):
        from ..data import Transformed

        self.recipe, self.preprocess, self.num_classes = recipe, preprocess, num_classes
        self.world, self.workers, self.channels_last = world, workers, channels_last
        self.dataset = Transformed(train_set, None)  # its transform is the stage's
        self.seeded = SeededSamples(self.dataset, recipe.seed)
        self.sampler = EpochSampler(self.seeded, world.rank, world.size, recipe.seed)
        self.mixer = None
        self.set_stage(preprocess.train_size, recipe.randaug_magnitude, recipe.mixup, recipe.cutmix)

    def set_stage(self, size: int, randaug_magnitude: float | None, mixup: float,
                  cutmix: float) -> None:
        """(Re)build the train transform and batch mixer."""
        from ..data import batch_mixer, train_transform

        r = self.recipe
        self.dataset.transform = train_transform(
            self.preprocess, size, randaug_magnitude=randaug_magnitude, randaug_ops=r.randaug_ops,
            hflip=r.hflip, scale=r.scale, cutout=r.cutout)
        self.mixer = batch_mixer(self.num_classes, mixup, cutmix)

    def batches(self, epoch: int, skip: int, count: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Micro-batches `skip` to `count` of `epoch` on the device: (images, int labels) or, with
        mixup/cutmix, (mixed images, soft targets). Nothing is drawn from the global random
        streams before the first batch is asked for, so the caller may restore them first."""
        r, dev = self.recipe, self.world.device
        self.sampler.set_epoch(epoch)
        self.sampler.start = skip * r.batch_size
        self.seeded.set_epoch(epoch)
        loader = DataLoader(self.seeded, batch_size=r.batch_size, sampler=self.sampler,
                            num_workers=self.workers, drop_last=True,
                            generator=loader_generator(r.seed, epoch),
                            pin_memory=dev.type == "cuda")
        it = iter(loader)
        for _ in range(skip, count):
            x, y = next(it)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if self.mixer is not None:
                x, y = self.mixer(x, y)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
