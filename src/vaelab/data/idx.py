"""The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/), plain or gzipped.

Header: two zero bytes, a type code, the number of dimensions, then each dimension as a big-endian
uint32; the data follows in C order.
"""

import gzip
import zlib
from pathlib import Path

import numpy as np

from vaelab.errors import DataError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad header); delete it and download again")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4) if len(raw) >= 4 + 4 * ndim else None
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = None if dims is None else 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if expected != len(raw):
        raise DataError(
            f"{path} is truncated or padded: {len(raw)} bytes where the header promises "
            f"{expected}; delete it and download again"
        )
    return (
        np.frombuffer(raw, dtype, offset=4 + 4 * ndim)
        .reshape(dims.astype(int))
        .astype(dtype.newbyteorder("="))
    )


def write_idx(path: Path, array: np.ndarray) -> None:
    """The inverse of `read_idx` for uint8 arrays (test fixtures, exports)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + np.ascontiguousarray(array, np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
