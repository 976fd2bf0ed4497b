"""Worker for test_train_ddp.py: one epoch of the quick recipe with every source of per-rank
difference turned off, so that N ranks at batch b must train the same model as one process at
batch N*b, up to float round-off.

Off: dropout, drop-path, mixup/cutmix (their random streams are per rank). Augmentation is seeded
per sample (effnet.train.sampling) and so the same in both. BatchNorm is the one real difference:
in train mode each rank normalises by its own b images, one process by all N*b. Here BN runs in
eval mode (its initial running statistics, frozen), i.e. a fixed affine map, the same everywhere.
Run as `python tests/ddp_equivalence.py OUT BATCH` (alone or under torchrun).
"""

import sys

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from effnet.train.presets import get_recipe
from effnet.train.recipe import override
from effnet.train.trainer import RunOptions, train


def _frozen_bn_train(self, mode: bool = True):
    return nn.Module.train(self, False)


def main(out: str, batch: int) -> None:
    _BatchNorm.train = _frozen_bn_train
    recipe = override(get_recipe("quick"), {
        "phi": -6, "batch_size": batch, "epochs": 1, "dropout": 0.0, "drop_path": 0.0,
        "mixup": 0.0, "cutmix": 0.0, "ema_decay": 0.0})
    train(recipe, RunOptions(output=out, train_subset=256, val_subset=64, progress=False,
                             tensorboard=False))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
