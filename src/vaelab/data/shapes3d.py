"""3D Shapes (Burgess & Kim 2018), the official file: `data=shapes3d data.data_dir=<folder>` with
3dshapes.h5 from github.com/deepmind/3d-shapes (reading it needs h5py: vaelab[shapes3d])."""

from pathlib import Path

import numpy as np
from torch import Tensor

from vaelab.data.factors import FactorDataModule, grid_rows, reading, subgrid
from vaelab.errors import DataError
from vaelab.extras import require

FILE = "3dshapes.h5"
SIZES = {"floor_hue": 10, "wall_hue": 10, "object_hue": 10, "scale": 8, "shape": 4,
         "orientation": 15}  # fmt: skip


class Shapes3DDataModule(FactorDataModule):
    """x: (3, 64, 64) colour; the six factors. The file (5.9 GB of uint8 images) holds the full
    grid in row-major factor order; only the rows of the kept sub-grid (`grid`) are read, through
    h5py, so memory is 12 KB per kept image (the full grid: 5.9 GB)."""

    factor_names = tuple(SIZES)

    def read_grid(self) -> tuple[Tensor, Tensor]:
        h5py = require("h5py", "shapes3d", "data=shapes3d (3dshapes.h5)")
        path = Path(self.data_dir) / FILE
        if not path.is_file():
            raise DataError(
                f"3D Shapes not found: looked for {path}; download {FILE} from "
                f"https://github.com/deepmind/3d-shapes into data.data_dir"
            )
        kept = subgrid(SIZES, self.grid)
        n = int(np.prod(list(SIZES.values())))
        layout = f"3D Shapes (h5 with images ({n}, 64, 64, 3) uint8 and labels ({n}, 6) float64)"
        with reading(path, layout), h5py.File(path, "r") as file:
            images, labels = file["images"], file["labels"]
            if images.shape != (n, 64, 64, 3) or images.dtype != np.uint8 or labels.shape != (n, 6):
                raise ValueError(f"images {images.shape} {images.dtype} and labels {labels.shape}")
            rows = grid_rows(SIZES, kept)
            x = images[rows] if len(rows) < n else images[()]
        return self.kept_grid(x, kept)
