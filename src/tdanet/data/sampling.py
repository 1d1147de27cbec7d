"""An epoch-aware sampler: yields (epoch, index) keys, sharded across processes.

Datasets derive every random choice of an item from (seed, epoch, index), and the order of
an epoch from (seed, epoch), so a run is the same on any number of data-loader workers and
after a resume; Lightning calls ``set_epoch`` before each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from ..errors import DataError


class EpochSampler(Sampler[tuple[int, int]]):
    """The items of one epoch for process ``rank`` of ``world_size``.

    Every process gets the same number of items (``length // world_size``; the remainder is
    dropped), as distributed training requires.
    """

    def __init__(
        self, length: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1
    ) -> None:
        if length < world_size:
            raise DataError(
                f"{length} item(s) cannot be shared among {world_size} processes; add data"
            )
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, 104729, self.epoch]).permutation(self.length)
        else:
            order = np.arange(self.length)
        mine = order[self.rank :: self.world_size][: len(self)]
        return iter([(self.epoch, int(i)) for i in mine])
