"""MPI3D (Gondal et al. 2019), the official files: `data=mpi3d data.variant=toy|realistic|real
data.data_dir=<folder>` holding mpi3d_<variant>.npz (rr-learning/disentanglement_dataset)."""

import zipfile
from pathlib import Path

import numpy as np
from torch import Tensor

from vaelab.data.factors import FactorDataModule, grid_rows, reading, subgrid
from vaelab.errors import ConfigError, DataError

SIZES = {"object_color": 6, "object_shape": 6, "object_size": 2, "camera_height": 3,
         "background_color": 3, "horizontal_axis": 40, "vertical_axis": 40}  # fmt: skip
VARIANTS = ("toy", "realistic", "real")


def npz_array(path: Path, key: str) -> np.ndarray:
    """An array of an npz file, memory-mapped when it is stored uncompressed (as MPI3D's are:
    np.load reads an npz member whole), else read."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            with np.load(path) as npz:
                return npz[key]
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(member)
            header_size = member.tell()
    with open(path, "rb") as file:  # where the member's bytes start: after its local header
        file.seek(info.header_offset + 26)
        name_size, extra_size = np.frombuffer(file.read(4), dtype="<u2")
    offset = info.header_offset + 30 + int(name_size) + int(extra_size) + header_size
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


class MPI3DDataModule(FactorDataModule):
    """x: (3, 64, 64) colour; the seven factors. The file (12.7 GB of uint8 images for each
    variant) holds the full grid in row-major factor order and is memory-mapped: only the rows of
    the kept sub-grid (`grid`) are read into memory, 12 KB per kept image."""

    factor_names = tuple(SIZES)
    default_label = "object_shape"

    def __init__(self, variant: str = "toy", **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ConfigError(f"data.variant={variant!r}: use one of {', '.join(VARIANTS)}")
        self.variant = variant

    def read_grid(self) -> tuple[Tensor, Tensor]:
        path = Path(self.data_dir) / f"mpi3d_{self.variant}.npz"
        if not path.is_file():
            raise DataError(
                f"MPI3D ({self.variant}) not found: looked for {path}; download it from "
                f"https://github.com/rr-learning/disentanglement_dataset into data.data_dir"
            )
        n = int(np.prod(list(SIZES.values())))
        with reading(path, f"MPI3D (npz with images ({n}, 64, 64, 3) uint8)"):
            images = npz_array(path, "images")
            if images.shape != (n, 64, 64, 3) or images.dtype != np.uint8:
                raise ValueError(f"images {images.shape} {images.dtype}")
            kept = subgrid(SIZES, self.grid)
            x = images[grid_rows(SIZES, kept)]
        return self.kept_grid(x, kept)
