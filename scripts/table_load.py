"""How long a large table takes to load: writes a cells x genes count CSV (by default 100,000 x
2,000, 5% of the entries non-zero, like a single-cell matrix) unless it exists, then times
`read_table` on it with pyarrow's reader, then with Python's csv module (minutes: --skip-slow).

    python scripts/table_load.py counts_100k.csv --rows 100000 --cols 2000
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vaelab.data.table_files import _read_text_slowly, _select, read_table


def write(path: Path, rows: int, cols: int, density: float, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.csv as pv

    rng = np.random.default_rng(seed)
    names = [f"g{j}" for j in range(cols)]
    with pv.CSVWriter(path, pa.schema([(n, pa.int32()) for n in names])) as writer:
        for start in range(0, rows, 10_000):
            n = min(10_000, rows - start)
            block = rng.poisson(3.0, (n, cols)) * (rng.random((n, cols)) < density)
            writer.write_table(pa.table(dict(zip(names, block.astype(np.int32).T))))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=2_000)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--skip-slow", action="store_true", help="do not time the csv module")
    args = parser.parse_args()
    if not args.path.is_file():
        started = time.perf_counter()
        write(args.path, args.rows, args.cols, args.density)
        print(f"wrote {args.path} in {time.perf_counter() - started:.1f} s")
    size = args.path.stat().st_size / 2**20
    started = time.perf_counter()
    table = read_table(str(args.path))
    fast = time.perf_counter() - started
    print(f"pyarrow: {len(table.x)} x {table.x.shape[1]} ({size:.0f} MiB) in {fast:.1f} s")
    if not args.skip_slow:
        del table
        started = time.perf_counter()
        _select(args.path, _read_text_slowly(args.path), None, None, None)
        slow = time.perf_counter() - started
        print(f"csv module: {slow:.1f} s ({slow / fast:.0f}x slower)")
    sys.exit(0)
