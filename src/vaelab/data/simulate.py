"""A count table with a known low-dimensional structure, as a test bed for count likelihoods:
cells of a few types, each type a cluster in a 2-D latent space; a gene's share of a cell's
counts is a softmax of a linear map of the cell's latent point; library sizes are log-normal;
counts are negative binomial (gamma-Poisson) around library x share, with one inverse
dispersion per gene.
"""

from pathlib import Path

import numpy as np


def count_table(
    cells: int = 3000, genes: int = 200, types: int = 4, seed: int = 0
) -> dict[str, np.ndarray]:
    """counts (cells, genes) int64, cell_type (cells,), latent (cells, 2), library (cells,)."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.stack([np.cos(2 * np.pi * np.arange(types) / types),
                              np.sin(2 * np.pi * np.arange(types) / types)], 1)  # fmt: skip
    cell_type = rng.integers(0, types, cells)
    latent = centres[cell_type] + rng.normal(0, 0.5, (cells, 2))
    weights = rng.normal(0, 1, (2, genes))
    logits = latent @ weights + rng.normal(0, 1, genes)
    share = np.exp(logits - logits.max(1, keepdims=True))
    share /= share.sum(1, keepdims=True)
    library = rng.lognormal(np.log(2000), 0.3, cells)
    mean = library[:, None] * share
    theta = rng.gamma(4.0, 1.0, genes)  # inverse dispersion: variance = mean + mean^2 / theta
    counts = rng.poisson(rng.gamma(theta, mean / theta))
    return {"counts": counts, "cell_type": cell_type, "latent": latent, "library": library}


def write_csv(path: Path, table: dict[str, np.ndarray]) -> None:
    """cell, cell_type, g0, g1, ...: one row per cell, its counts as integers."""
    counts = table["counts"]
    header = ["cell", "cell_type", *(f"g{j}" for j in range(counts.shape[1]))]
    rows = (
        ",".join([f"cell{i}", f"type{t}", *map(str, row)])
        for i, (t, row) in enumerate(zip(table["cell_type"], counts.tolist()))
    )
    Path(path).write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")


def write_h5ad(path: Path, table: dict[str, np.ndarray]) -> None:
    """The same cells as an AnnData file, as single-cell tools write one: the counts a sparse X
    (CSR), the cells' names obs_names, their types obs["cell_type"], genes var_names."""
    import anndata
    import pandas as pd
    from scipy import sparse

    counts = table["counts"]
    obs = pd.DataFrame(
        {"cell_type": [f"type{t}" for t in table["cell_type"]]},
        index=[f"cell{i}" for i in range(len(counts))],
    )
    var = pd.DataFrame(index=[f"g{j}" for j in range(counts.shape[1])])
    X = sparse.csr_matrix(counts.astype(np.float32))  # noqa: N806 (AnnData's name)
    anndata.AnnData(X, obs=obs, var=var).write_h5ad(path)
