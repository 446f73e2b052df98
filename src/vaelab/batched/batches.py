"""A stack's training batches: each member's own loader, in lockstep, stacked."""

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from vaelab.data.batches import TensorBatches


class StackedBatches:
    """x (members, batch, *shape) and y (members, batch): member i's slice at each step is the
    batch its own loader gives there, so each member sees the data order (and the dynamic
    binarisation draws) of its seed, as its lone run would. The loaders cut the same data into
    batches of one size: they have one length."""

    def __init__(self, loaders: Sequence[TensorBatches]):
        if not loaders:
            raise ValueError("a stack's batches need at least one member's loader")
        lengths = sorted({len(loader) for loader in loaders})
        if len(lengths) > 1:
            raise ValueError(f"the members' loaders differ in length ({lengths}): same data and "
                             f"batch size needed")  # fmt: skip
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def set_epoch(self, epoch: int) -> None:
        for loader in self.loaders:
            loader.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for parts in zip(*self.loaders, strict=True):
            yield torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])


def member_batches(datamodule, seeds: Sequence[int]) -> StackedBatches:
    """The training batches of a datamodule's members, one seed a member."""
    return StackedBatches([datamodule.loader("train", train=True, seed=seed) for seed in seeds])
