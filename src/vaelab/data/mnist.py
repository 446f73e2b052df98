"""MNIST, read straight from its four IDX files (gzipped or not).

The files are looked for in `data_dir` itself (a flat folder such as Debian's
/usr/share/datasets/fashion-mnist) and in torchvision's layout `data_dir/<Name>/raw/`. Reading the
files directly, not through torchvision's dataset class, also accepts copies whose checksums
differ from torchvision's list, and costs no per-example Python.
"""

from pathlib import Path

import torch

from vaelab.data.idx import read_idx
from vaelab.data.in_memory import Arrays, InMemoryDataModule
from vaelab.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MNISTDataModule(InMemoryDataModule):
    """x: (1, 28, 28) uint8 in memory, float32 in [0, 1] per batch; y: the class. The official
    test set is the test split; val_size examples of the training set are the validation split."""

    name = "MNIST"  # torchvision's class name, and its folder under data_dir

    def __init__(self, *args, val_size: float = 5000, **kwargs):
        super().__init__(*args, val_size=val_size, **kwargs)

    def _folders(self) -> list[Path]:
        root = Path(self.data_dir).expanduser()
        return [root, root / self.name / "raw"]

    def _find(self, stem: str) -> Path | None:
        for folder in self._folders():
            for path in (folder / stem, folder / f"{stem}.gz"):
                if path.is_file():
                    return path
        return None

    def _missing(self) -> list[str]:
        return [stem for pair in FILES.values() for stem in pair if self._find(stem) is None]

    def prepare_data(self) -> None:
        missing = self._missing()
        if missing and self.download:
            import torchvision.datasets

            dataset_class = getattr(torchvision.datasets, self.name)
            for train in (True, False):
                dataset_class(self.data_dir, train=train, download=True)
            missing = self._missing()
        if missing:
            folders = " and ".join(str(f) for f in self._folders())
            raise DataError(
                f"{self.name} not found: looked in {folders} for {', '.join(missing)} "
                f"(.gz or unpacked); set data.data_dir to the folder holding them, "
                f"or data.download=true to fetch them"
            )

    def read(self) -> dict[str, Arrays]:
        self.prepare_data()  # without a Trainer nobody else calls it; it only checks for files
        arrays = {}
        for split, (images, labels) in FILES.items():
            x = torch.from_numpy(read_idx(self._find(images))).unsqueeze(1)
            y = torch.from_numpy(read_idx(self._find(labels))).long()
            if x.ndim != 4 or len(x) != len(y):
                raise DataError(
                    f"{self._find(images)}: expected N images of HxW with N labels, got "
                    f"images {tuple(x.shape[:1] + x.shape[2:])} and {len(y)} labels"
                )
            arrays[split] = (x, y)
        shapes = {split: tuple(x.shape[1:]) for split, (x, _) in arrays.items()}
        if len(set(shapes.values())) > 1:
            first, *rest = FILES
            raise DataError(
                f"{self._find(FILES[rest[0]][0])} holds images of shape {shapes[rest[0]]}, "
                f"{self._find(FILES[first][0])} of shape {shapes[first]}: the splits of one "
                f"dataset must match; put the files of one dataset in data.data_dir"
            )
        return arrays
