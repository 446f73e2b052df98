"""A simulated count table (cells x genes, CSV or AnnData .h5ad) with a known structure, for
count likelihoods:

python scripts/simulate_counts.py counts.csv --cells 3000 --genes 200
vaelab-train experiment=counts data.path=counts.csv
python scripts/simulate_counts.py cells.h5ad   # a sparse X, obs_names, obs["cell_type"]
"""

import argparse
from pathlib import Path

from vaelab.data.simulate import count_table, write_csv, write_h5ad

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cells", type=int, default=3000)
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--types", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = count_table(args.cells, args.genes, args.types, args.seed)
    (write_h5ad if args.out.suffix == ".h5ad" else write_csv)(args.out, table)
    print(f"{args.out}: {args.cells} cells x {args.genes} genes, {args.types} cell types")
