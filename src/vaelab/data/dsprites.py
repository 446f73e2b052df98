"""dSprites (Matthey et al. 2017), the official file: `data=dsprites data.data_dir=<folder>` with
dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz from github.com/deepmind/dsprites-dataset."""

from pathlib import Path

import numpy as np
from torch import Tensor

from vaelab.data.factors import FactorDataModule, grid_rows, reading, subgrid
from vaelab.errors import DataError

FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
NAMES = ("shape", "scale", "orientation", "position_x", "position_y")  # after colour (one value)


class DSpritesDataModule(FactorDataModule):
    """x: (1, 64, 64), 0 or 1; the factors of its `latents_classes` but colour. The file holds the
    full grid in row-major factor order; `grid` keeps a sub-grid. Reading it needs ~3 GB (the
    compressed `imgs` array is unpacked whole), the data kept 48 MB per 10,000 images."""

    factor_names = NAMES

    def read_grid(self) -> tuple[Tensor, Tensor]:
        path = Path(self.data_dir) / FILE
        if not path.is_file():
            raise DataError(
                f"dSprites not found: looked for {path}; download {FILE} from "
                f"https://github.com/deepmind/dsprites-dataset into data.data_dir"
            )
        layout = "dSprites (npz with imgs (N, 64, 64) uint8 of 0/1 and latents_classes (N, 6))"
        with reading(path, layout), np.load(path) as npz:
            classes = npz["latents_classes"]
            sizes = dict(zip(("colour", *NAMES), (classes.max(0) + 1).tolist(), strict=True))
            _check_layout(path, classes, sizes)
            imgs = npz["imgs"]
            if imgs.shape != (len(classes), 64, 64) or imgs.dtype != np.uint8:
                raise ValueError(f"imgs {imgs.shape} {imgs.dtype} for {len(classes)} factor rows")
            kept = subgrid({n: sizes[n] for n in NAMES}, self.grid)
            rows = grid_rows(sizes, {"colour": np.arange(1), **kept})
            images = imgs[rows]
            if images.max(initial=0) > 1:
                raise ValueError(f"imgs hold values up to {images.max()}, not 0 and 1")
            images = images * np.uint8(255)
        return self.kept_grid(images, kept)


def _check_layout(path: Path, classes: np.ndarray, sizes: dict[str, int]) -> None:
    """The rows must be the full grid in row-major order, as the official file has them."""
    expected = np.stack(np.unravel_index(np.arange(len(classes)), tuple(sizes.values())), 1)
    if classes.ndim != 2 or classes.shape[1] != 6 or not np.array_equal(classes, expected):
        raise ValueError(
            f"latents_classes of shape {classes.shape} are not the factor grid in row-major order"
        )
