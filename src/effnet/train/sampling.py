"""Data order and augmentation as functions of (seed, epoch, index), so that any point of a run
can be replayed: a resumed run skips the batches already done and sees the same images, crops and
flips as the run that was interrupted, with or without DataLoader workers."""

from __future__ import annotations

import contextlib
import itertools
import random

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

_MASK = (1 << 63) - 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed per (run seed, epoch, sample) from a SplitMix64-style mix."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    x ^= x >> 29
    return x


@contextlib.contextmanager
def isolated_rng(seed: int):
    """Seed torch (CPU), numpy and random for the block, then put the caller's streams back."""
    # torch.manual_seed would also queue a CUDA seeding call (with a stack trace) per sample
    # while CUDA is uninitialised; only the CPU generator is needed here
    saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])


class SeededSamples(Dataset):
    """Wraps a transformed dataset: sample i of epoch e is always augmented the same way."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed, self.epoch = base, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        with isolated_rng(sample_seed(self.seed, self.epoch, index)):
            return self.base[index]


class EpochSampler(DistributedSampler):
    """DistributedSampler (order from seed + epoch, one shard per rank, tail dropped so every rank
    gets the same count) that can start `start` samples into its shard."""

    def __init__(self, dataset: Dataset, rank: int, world_size: int, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=True)
        self.start = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def loader_generator(seed: int, epoch: int) -> torch.Generator:
    """The DataLoader's own generator (it draws worker base seeds from it, not from the global
    stream, which stays untouched between checkpoints)."""
    g = torch.Generator()
    g.manual_seed(sample_seed(seed, epoch, -1) & _MASK)
    return g
