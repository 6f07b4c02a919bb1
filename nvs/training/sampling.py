"""Deterministic, resumable data order: the sample at a global position is a pure function of
(seed, position), so a resumed run reads exactly the batches an uninterrupted run would have."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.utils.data import Sampler

_PERMUTE_LIMIT = 100_000


@lru_cache(maxsize=4)
def _permutation(num_items: int, seed: int, epoch: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(num_items, generator=g).tolist())


def sample_index(position: int, num_items: int, seed: int) -> int:
    """Index of the item at a global position. Small data sets: a seeded permutation per epoch.
    Huge (procedural) ranges: a bijective affine shuffle, so no permutation is materialised."""
    epoch, offset = divmod(position, num_items)
    if num_items <= _PERMUTE_LIMIT:
        return _permutation(num_items, seed, epoch)[offset]
    stride = 2654435761 % num_items or 1
    while math.gcd(stride, num_items) != 1:
        stride += 1
    return (offset * stride + epoch * 7919 + seed) % num_items


class StepSampler(Sampler[int]):
    """Indices for one process: positions (step * world + rank) * batch + i for steps >= start.

    Yields ``epoch * num_items + item``: data sets take the item modulo their length and may use
    the epoch (e.g. to draw other views of a scene), which survives DataLoader workers."""

    def __init__(self, num_items: int, batch: int, start_step: int, total_steps: int, rank: int, world: int, seed: int):
        self.num_items, self.batch, self.start, self.total = num_items, batch, start_step, total_steps
        self.rank, self.world, self.seed = rank, world, seed

    def __iter__(self):
        for step in range(self.start, self.total):
            base = (step * self.world + self.rank) * self.batch
            for i in range(self.batch):
                position = base + i
                yield (position // self.num_items) * self.num_items + sample_index(position, self.num_items, self.seed)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.batch
