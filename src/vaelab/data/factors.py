"""The base of datasets whose examples are points of a grid of known generative factors."""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from vaelab.data.in_memory import Arrays, InMemoryDataModule
from vaelab.errors import ConfigError, DataError, UserError


def subgrid(sizes: dict[str, int], counts: dict[str, int] | None) -> dict[str, np.ndarray]:
    """Per factor, the indices of the values kept: `counts[name]` values evenly spaced over the
    factor's `sizes[name]` (all of them where counts is None or leaves the factor out)."""
    counts = dict(counts or {})
    unknown = set(counts) - set(sizes)
    if unknown:
        raise ConfigError(
            f"data.grid names {', '.join(sorted(unknown))}, which this data does not have; its "
            f"factors are {', '.join(sizes)}"
        )
    kept = {}
    for name, size in sizes.items():
        count = counts.get(name, size)
        if not isinstance(count, int) or not 1 <= count <= size:
            raise ConfigError(
                f"data.grid.{name}={count}: must be a whole number of values from 1 to {size}"
            )
        kept[name] = np.unique(np.round(np.linspace(0, size - 1, count)).astype(np.int64))
    return kept


def grid_rows(sizes: dict[str, int], kept: dict[str, np.ndarray]) -> np.ndarray:
    """The rows of a dataset stored as the full grid in row-major factor order (dSprites,
    Shapes3D, MPI3D) that hold the kept sub-grid, ascending: (M,) int64."""
    mesh = np.meshgrid(*kept.values(), indexing="ij")
    return np.ravel_multi_index([m.ravel() for m in mesh], tuple(sizes.values()))


def grid_factors(kept: dict[str, np.ndarray]) -> np.ndarray:
    """The sub-grid's points as factor indices within it, row-major: (M, K) int64."""
    mesh = np.meshgrid(*[np.arange(len(v)) for v in kept.values()], indexing="ij")
    return np.stack([m.ravel() for m in mesh], 1).astype(np.int64)


class FactorDataModule(InMemoryDataModule):
    """Subclasses implement `read_grid()`, returning the images (N, C, H, W) uint8 and their
    factors (N, K) int64, and set `factor_names` and `factor_sizes`.

    After `setup()`, `factors[split]` holds the split's factor indices (N, K) beside its
    `(x, y)`; y is the factor named `label_factor`, for the probes and the pictures.
    """

    factor_names: tuple[str, ...] = ()
    default_label = "shape"  # the factor that is y unless label_factor names another

    def __init__(self, label_factor: str | None = None, grid: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.label_factor, self.grid = label_factor or self.default_label, grid
        self.factor_sizes: tuple[int, ...] = ()
        self._factors: Tensor | None = None

    def read_grid(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def kept_grid(self, images: np.ndarray, kept: dict[str, np.ndarray]) -> tuple[Tensor, Tensor]:
        """The kept sub-grid's images (row-major over it) as tensors, with its factor indices;
        its factor sizes recorded."""
        self.factor_sizes = tuple(len(v) for v in kept.values())
        return as_tensors(images, grid_factors(kept))

    def read(self) -> dict[str, Arrays]:
        if self.label_factor not in self.factor_names:
            raise ConfigError(
                f"data.label_factor={self.label_factor!r}: use one of "
                f"{', '.join(self.factor_names)}"
            )
        x, factors = self.read_grid()
        self._factors = factors
        return {"train": (x, factors[:, self.factor_names.index(self.label_factor)].clone())}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        super().setup(stage)
        self.factors = {split: self._factors[index] for split, index in self.indices.items()}
        self._factors = None


def unreadable(path, layout: str, error: Exception) -> DataError:
    """The one-line error for a file that is not in its dataset's published layout."""
    why = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return DataError(f"cannot read {path} as {layout}: {why}")


@contextmanager
def reading(path, layout: str) -> Iterator[None]:
    """Whatever a reader raises on a file that is not in its dataset's layout (numpy's zip
    errors on a truncated npz, h5py's on a truncated or foreign h5, an index past the end of too
    few images) is one line naming the file; the reader is third-party code, a kind of error
    there cannot be listed in advance."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        raise unreadable(path, layout, error) from None


def as_tensors(images: np.ndarray, factors: np.ndarray) -> tuple[Tensor, Tensor]:
    """(N, H, W[, C]) images as (N, C, H, W) uint8 and factors as int64 tensors."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.ascontiguousarray(factors, dtype=np.int64))
