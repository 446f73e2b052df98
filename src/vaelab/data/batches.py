"""Batches cut by index from tensors in memory: no per-example Python, no worker processes."""

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from vaelab.data.sparse_rows import SparseRows


class EpochShuffle:
    """The example order of one epoch, a permutation drawn from (seed, epoch) alone.

    Lightning calls `set_epoch` on a loader's `sampler` before each epoch (as it does for a
    DistributedSampler), so the order is reproducible and a resumed run sees the same one.
    """

    def __init__(self, n: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.n // self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        """This rank's share of the epoch's order. Every rank draws the same permutation and takes
        every world_size-th example, so shards never overlap; the last n % world_size examples of
        the permutation are left out so that all ranks run the same number of steps."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.arange(self.n)
        return order[self.rank : len(self) * self.world_size : self.world_size]


def to_float(x: Tensor) -> Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; float data passes through."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


# What one cut of several batches may hold at most when the model chooses how many (auto): the
# rows of a call are a copy, on the device the data lives on.
CALL_BYTES = 256 * 2**20


class Steps:
    """What a loader hands Lightning beside the rows of several consecutive batches: their size
    and where they start, so that the model can cut them apart, take one optimizer step on each,
    hand back those it had no time for (Lightning must act between two of them), and say how
    many the next call should hold."""

    def __init__(self, loader: "TensorBatches", first: int, batch_size: int):
        self.loader, self.first, self.batch_size = loader, first, batch_size

    def give_back(self, used: int) -> None:
        """Only the first `used` batches were trained on: the next call starts with the rest."""
        self.loader._taken = self.first + used

    def next_calls_hold(self, batches: int) -> None:
        """How many batches the next calls should hold, as many as CALL_BYTES of rows allow."""
        row = 4 * math.prod(self.loader.x.shape[1:])  # float32 once cut
        self.loader.steps_per_call = max(1, min(batches, CALL_BYTES // (self.batch_size * row)))


class TensorBatches:
    """An iterable of `(x, y)` batches over in-memory tensors, with `len()` for progress bars.

    With `steps_per_call = K` (not None) it yields `(x, y, Steps)` instead: the rows of K
    consecutive batches, cut by one index, for a model that takes K optimizer steps per Lightning
    step. `len()` still counts batches, so Lightning's counts (batches per epoch, limits,
    validation intervals) stay counts of optimizer steps.
    """

    batch_sampler = None  # Lightning looks for DataLoader's attributes once it sees `sampler`

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        binarize: bool = False,
        steps_per_call: int | None = None,
    ):
        self.x, self.y, self.batch_size, self.drop_last = x, y, batch_size, drop_last
        self.binarize, self.seed, self.steps_per_call = binarize, seed, steps_per_call
        self.sampler = EpochShuffle(len(x), shuffle, seed, rank, world_size)
        self._taken = 0  # batches of the current epoch handed over
        self._skip: dict[str, int] | None = None  # where a restored epoch resumes

    def __len__(self) -> int:
        n, b = len(self.sampler), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        # With the data on an accelerator the batches are cut there: one copy of the epoch's
        # order per epoch, and no host-to-device copy per batch.
        order = self.sampler.indices().to(self.x.device)
        self._taken = 0
        if self._skip is not None and self._skip["epoch"] == self.sampler.epoch:
            self._taken = self._skip["taken"]
        self._skip = None
        n, b = len(self), self.batch_size
        # Read again for each call: a model may hand batches back, and change K (Steps).
        while self._taken < n:
            first = self._taken
            last = min(first + (self.steps_per_call or 1), n)
            self._taken = last
            index = order[first * b : last * b]
            x = self.x[index]
            x = to_float(x.to_dense() if isinstance(x, SparseRows) else x)
            if self.binarize:
                parts = [self._binarize(part, first + j) for j, part in enumerate(x.split(b))]
                x = parts[0] if len(parts) == 1 else torch.cat(parts)
            if self.steps_per_call is None:
                yield x, self.y[index]
            else:
                yield x, self.y[index], Steps(self, first, b)

    def _binarize(self, x: Tensor, batch: int) -> Tensor:
        """A fresh draw x ~ Bernoulli(grey value) per batch and epoch (dynamic binarisation),
        from (seed, epoch, batch) alone, so a resume redraws the same, whatever the batches
        handed over at once (on an accelerator its own generator draws, so the draws differ
        from the host's)."""
        key = (self.seed * 100_003 + self.sampler.epoch) * 100_003 + batch
        key = key * self.sampler.world_size + self.sampler.rank
        generator = torch.Generator(x.device).manual_seed(key)
        return torch.bernoulli(x, generator=generator)

    # Lightning saves these in the checkpoint and restores them on resume (its `_Stateful`
    # protocol), so a run stopped mid-epoch continues with the very next batch of the same order.
    # Lightning fetches no batch ahead from a loader that has a length, so at a checkpoint every
    # batch handed over has been trained on.
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "taken": self._taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip = dict(state)


def num_examples(loader) -> int | None:
    """The examples of the split a loader goes over, all ranks together: what an estimate of the
    aggregate posterior over that split needs. None for a loader that does not say."""
    if isinstance(loader, (list, tuple)):  # Lightning's several loaders: the first
        loader = loader[0] if loader else None
    if isinstance(loader, TensorBatches):
        return len(loader.x)
    dataset = getattr(loader, "dataset", None)  # a torch DataLoader
    return len(dataset) if hasattr(dataset, "__len__") else None
