"""The base of every datamodule whose data fits in memory: read once, split once, cut by index."""

import lightning as L
import numpy as np
import torch
from torch import Tensor

from vaelab.config.schema import COUNT_LIKELIHOODS
from vaelab.data.batches import TensorBatches, to_float
from vaelab.data.sparse_rows import SparseRows
from vaelab.errors import ConfigError

Arrays = tuple[Tensor, Tensor]  # x (N, *shape) uint8 or float32; y (N,) int64, -1 where unlabelled


def _count(size: float, n: int, key: str) -> int:
    """A split size given as a fraction (< 1; never rounded down to nothing) or a count."""
    count = max(1, round(size * n)) if size < 1 else int(size)
    if not 0 < count < n:
        raise ConfigError(f"data.{key}={size}: gives {count} of {n} examples; need 0 < size < {n}")
    return count


class InMemoryDataModule(L.LightningDataModule):
    """Subclasses implement `read()`; this class splits, batches and reports `shape`.

    `batch_size` is the global batch: under DDP each of the world's ranks gets an equal share.
    `likelihood` and `latent_dim` describe what a model of this data uses by default; the model
    config reads them from here. `binarize` turns grey values in [0, 1] into 0/1 draws.
    """

    # Data with known generative factors names them (vaelab.data.factors); here there are none.
    factor_names: tuple[str, ...] = ()

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        val_size: float = 0.1,
        test_size: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        download: bool = False,
        drop_last: bool = False,
        binarize: str = "none",
        likelihood: str = "bernoulli",
        latent_dim: int = 16,
        on_device: bool | str = "auto",
    ):
        super().__init__()  # the values were checked with the config (vaelab.config.schema)
        self.data_dir, self.batch_size, self.download = data_dir, batch_size, download
        self.val_size, self.test_size, self.split_seed = val_size, test_size, split_seed
        self.seed, self.drop_last = seed, drop_last
        self.binarize = binarize
        self.likelihood, self.latent_dim = likelihood, latent_dim
        self.on_device = on_device
        self.splits: dict[str, Arrays] = {}
        # Each split's examples as positions in one part of what `read()` returned (its
        # `sources` entry): how exported embeddings point back to their rows.
        self.sources: dict[str, str] = {}
        self.indices: dict[str, Tensor] = {}
        # Row names per part of `read()`'s data, where the data has them (a table's id column).
        self.ids: dict[str, np.ndarray] = {}
        self.factors: dict[str, Tensor] = {}  # per split (N, K) factor indices, where known
        # Training batches handed over per Lightning step, when several are: set by the run
        # (trainer.steps_per_call).
        self.steps_per_call: int | None = None

    def read(self) -> dict[str, Arrays]:
        """The data as tensors: {"train": ...} and, where the dataset fixes them, "val" and
        "test"; a split that is not given is cut from "train"."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = self.read()
        n = len(arrays["train"][0])
        cut = [split for split in ("val", "test") if split not in arrays]
        if n < 1 + len(cut):
            # Else the split sizes would take the blame for data too small to split at all.
            raise ConfigError(
                f"the data holds {n} example{'s' * (n != 1)}; training needs at least "
                f"{1 + len(cut)} (one each for train, {' and '.join(cut)}): give more rows or "
                f"images"
            )
        # A generator of its own: the split never depends on the run's seed or on what ran before.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        start = 0
        for split, size in (("val", self.val_size), ("test", self.test_size)):
            if split in arrays:
                self.sources[split], self.indices[split] = (
                    split,
                    torch.arange(len(arrays[split][0])),
                )
                continue
            count = _count(size, n, f"{split}_size")
            self.sources[split], self.indices[split] = "train", order[start : start + count]
            start += count
        if start >= n:
            raise ConfigError(
                f"data.val_size={self.val_size} and data.test_size={self.test_size} leave none "
                f"of the {n} examples for training"
            )
        self.sources["train"], self.indices["train"] = "train", order[start:]
        for split, source in self.sources.items():
            x, y = arrays[source]
            if split != source or split == "train":  # a given val or test split is used whole
                x, y = x[self.indices[split]], y[self.indices[split]]
            self.splits[split] = (x, y)
        # Binarisation (Burda et al. 2016): grey values become x ~ Bernoulli(grey). A fixed draw
        # for the splits it applies to, from split_seed; `dynamic` redraws training per batch.
        fixed = ("val", "test") if self.binarize == "dynamic" else ("train", "val", "test")
        if self.binarize != "none":
            generator = torch.Generator().manual_seed(self.split_seed)
            for name in fixed:
                x, y = self.splits[name]
                drawn = torch.bernoulli(to_float(x), generator=generator).to(torch.uint8) * 255
                self.splits[name] = (drawn, y)

    def check_likelihood(self, likelihood: str, fix: str | None = None) -> None:
        """Refuse a Bernoulli likelihood on values outside [0, 1], where its loss is unbounded,
        and a count likelihood on anything but counts. `fix`: what to do instead, where the
        likelihood is not the user's to change (a trained model's)."""
        if likelihood in COUNT_LIKELIHOODS:
            self._check_counts(
                likelihood, fix or "use model.likelihood=gaussian, or give the raw counts"
            )
        x = self.splits["train"][0]
        if likelihood != "bernoulli" or x.dtype == torch.uint8:
            return
        low, high = x.min().item(), x.max().item()
        if low < 0 or high > 1:
            fix = fix or "use model.likelihood=gaussian or rescale the data"
            raise ConfigError(
                f"model.likelihood=bernoulli needs data in [0, 1], but the training data spans "
                f"[{low:.3g}, {high:.3g}]; {fix}"
            )

    def _check_counts(self, likelihood: str, fix: str) -> None:
        for split, (x, _) in self.splits.items():
            cells = x.values if isinstance(x, SparseRows) else x.flatten(1)
            bad = ~torch.isfinite(cells) | (cells < 0) | (cells != torch.round(cells))
            if not bad.any():
                continue
            if isinstance(x, SparseRows):  # a stored entry: its row and column
                position = int(bad.nonzero()[0])
                row, column, value = x.row_of(position), int(x.col[position]), cells[position]
            else:
                row, column = (int(i) for i in bad.nonzero()[0])
                value = cells[row, column]
            names = self.feature_names()
            where = f"feature {names[column]!r}" if names else f"value {column}"
            index = int(self.indices[split][row])  # the example's row in its source data
            raise ConfigError(
                f"model.likelihood={likelihood} needs counts (whole numbers >= 0), but the data "
                f"holds {value.item():g} (example {index}, {where}); {fix}"
            )

    def label_names(self) -> list[str] | None:
        """The names the label codes stand for, where the data has text labels."""
        return None

    def feature_names(self) -> list[str]:
        """The names of a table's columns; none for images."""
        return []

    def row_ids(self, split: str) -> np.ndarray | None:
        """The ids of a split's rows, where the data names its rows."""
        ids = self.ids.get(self.sources[split])
        return None if ids is None else ids[self.indices[split].numpy()]

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. (1, 28, 28); known after `setup()`."""
        if not self.splits:
            raise RuntimeError("call setup() before reading the datamodule's shape")
        return tuple(self.splits["train"][0].shape[1:])

    def loader(self, split: str, train: bool = False) -> TensorBatches:
        """Batches of a split: shuffled per epoch (and with drop_last) when `train`, else in the
        split's fixed order, as for embedding or testing a whole split."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if self.batch_size % world:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is not divisible by the {world} devices"
            )
        x, y = self.splits[split]
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if self._keep_on(device):
            x, y = x.to(device), y.to(device)
        return TensorBatches(
            x,
            y,
            self.batch_size // world,
            shuffle=train,
            drop_last=train and self.drop_last,
            seed=self.seed,
            rank=rank,
            world_size=world,
            binarize=train and self.binarize == "dynamic",
            steps_per_call=self.steps_per_call if train else None,
        )

    def _keep_on(self, device: torch.device) -> bool:
        """Whether the data should live on `device`: always when on_device=true; with auto,
        on a CUDA device when all splits take at most a quarter of its memory."""
        if device.type == "cpu" or self.on_device is False:
            return False
        if self.on_device is True:
            return True
        if device.type != "cuda":
            return False
        size = sum(t.nbytes for pair in self.splits.values() for t in pair)
        return size <= torch.cuda.get_device_properties(device).total_memory // 4

    def train_dataloader(self) -> TensorBatches:
        return self.loader("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self.loader("val")

    def test_dataloader(self) -> TensorBatches:
        return self.loader("test")
