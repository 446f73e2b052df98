"""CIFAR-10 (Krizhevsky 2009): 60,000 colour images of 32x32 in ten classes, read from the
official python batches (cifar-10-batches-py/data_batch_1..5 and test_batch).

The batches are pickles of numpy arrays. They are read with an unpickler that builds nothing but
numpy arrays, lists and dicts, so a tampered file cannot run code; and read directly rather than
through torchvision's class, whose md5 check only the official files pass.
"""

import pickle
from pathlib import Path

import numpy as np
import torch

from vaelab.data.in_memory import Arrays, InMemoryDataModule
from vaelab.errors import DataError

FOLDER = "cifar-10-batches-py"
FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

# What a pickled numpy array refers to: numpy 1 and 2 name the modules differently, protocol 2
# wraps bytes in _codecs.encode, protocol 5 uses _frombuffer.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: (images (N, 3, 32, 32) uint8, labels (N,) int64)."""
    try:
        with open(path, "rb") as file:
            batch = _ArrayUnpickler(file, encoding="latin1").load()
        data, labels = np.asarray(batch["data"], np.uint8), np.asarray(batch["labels"], np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"{path} is not a CIFAR-10 python batch ({error}); delete it and download again"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"{path}: expected N rows of 3072 bytes and N labels, got data {data.shape} and "
            f"{len(labels)} labels; delete it and download again"
        )
    return data.reshape(-1, 3, 32, 32), labels


class CIFAR10DataModule(InMemoryDataModule):
    """x: (3, 32, 32) uint8 in memory, float32 in [0, 1] per batch; y: the class. The official
    test batch is the test split; val_size training images are the validation split."""

    def __init__(self, *args, val_size: float = 5000, likelihood: str = "gaussian", **kwargs):
        super().__init__(*args, val_size=val_size, likelihood=likelihood, **kwargs)

    def _folders(self) -> list[Path]:
        root = Path(self.data_dir).expanduser()
        return [root / FOLDER, root]

    def _folder(self) -> Path | None:
        for folder in self._folders():
            if all((folder / name).is_file() for names in FILES.values() for name in names):
                return folder
        return None

    def prepare_data(self) -> None:
        if self._folder() is None and self.download:
            import torchvision.datasets

            try:
                for train in (True, False):
                    torchvision.datasets.CIFAR10(self.data_dir, train=train, download=True)
            except RuntimeError as error:
                raise DataError(f"CIFAR-10 download into {self.data_dir} failed: {error}") from None
        if self._folder() is None:
            names = ", ".join(name for names in FILES.values() for name in names)
            raise DataError(
                f"CIFAR-10 not found: looked in {' and '.join(map(str, self._folders()))} for "
                f"{names}; set data.data_dir to the folder holding {FOLDER}/, or "
                f"data.download=true to fetch it"
            )

    def read(self) -> dict[str, Arrays]:
        self.prepare_data()  # without a Trainer nobody else calls it; it only checks for files
        folder = self._folder()
        arrays = {}
        for split, names in FILES.items():
            images, labels = zip(*(read_batch(folder / name) for name in names), strict=True)
            arrays[split] = (
                torch.from_numpy(np.concatenate(images)),
                torch.from_numpy(np.concatenate(labels)),
            )
        return arrays
