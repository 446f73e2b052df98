"""A sparse .h5ad stays sparse in memory (CSR) and gives the batches the dense path gives."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from vaelab.data import TabularDataModule
from vaelab.data.simulate import count_table
from vaelab.data.sparse_rows import SparseRows

anndata = pytest.importorskip("anndata")  # the anndata extra; dev installs it


def write_both(tmp_path, counts: np.ndarray, labels: np.ndarray):
    """The same matrix as a sparse .h5ad and as a dense .npz."""
    import pandas as pd

    obs = pd.DataFrame(
        {"cell_type": labels.astype(str)}, index=[f"c{i}" for i in range(len(labels))]
    )
    var = pd.DataFrame(index=[f"x{j}" for j in range(counts.shape[1])])
    adata = anndata.AnnData(sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)
    adata.write_h5ad(tmp_path / "sparse.h5ad")
    np.savez(tmp_path / "dense.npz", x=counts.astype(np.float32), cell_type=labels.astype(str))
    return tmp_path / "sparse.h5ad", tmp_path / "dense.npz"


def test_selected_rows_stay_sparse_and_densify_to_the_dense_rows():
    matrix = sp.random(50, 7, density=0.2, format="csr", dtype=np.float32, random_state=0)
    rows = SparseRows.from_scipy(matrix)
    index = torch.tensor([3, 0, 49, 3, 17])
    picked = rows[index]
    assert isinstance(picked, SparseRows) and picked.nbytes < matrix.toarray()[index].nbytes * 3
    np.testing.assert_array_equal(picked.to_dense().numpy(), matrix.toarray()[index.numpy()])
    np.testing.assert_array_equal(rows[10:20].to_dense().numpy(), matrix.toarray()[10:20])
    np.testing.assert_allclose(rows.row_sums().numpy(), matrix.sum(1).A1, rtol=1e-6)
    mean, std = rows.column_moments()
    np.testing.assert_allclose(mean.numpy(), matrix.toarray().mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(std.numpy(), matrix.toarray().std(0, ddof=1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("transform", [{"log1p": True, "standardize": True},
                                       {"log1p": False, "standardize": False}])  # fmt: skip
def test_the_sparse_path_gives_the_batches_of_the_dense_one(tmp_path, transform):
    table = count_table(cells=400, genes=30, types=3, seed=1)
    kept = np.random.default_rng(0).random(table["counts"].shape) < 0.1  # single-cell sparsity
    sparse, dense = write_both(tmp_path, table["counts"] * kept, table["cell_type"])
    modules = []
    for path in (sparse, dense):
        dm = TabularDataModule(path=str(path), label_column="cell_type", batch_size=64, seed=5,
                               **transform)  # fmt: skip
        dm.setup("fit")
        modules.append(dm)
    held, flat = modules
    assert isinstance(held.splits["train"][0], SparseRows)
    assert held.splits["train"][0].nbytes < flat.splits["train"][0].nbytes / 2  # ~90% zeros
    assert held.shape == flat.shape == (30,)
    for split, train in (("train", True), ("val", False), ("test", False)):
        for (xs, ys), (xd, yd) in zip(held.loader(split, train), flat.loader(split, train),
                                      strict=True):  # fmt: skip
            torch.testing.assert_close(xs, xd, rtol=1e-4, atol=1e-5)
            assert torch.equal(ys, yd)


def test_a_count_vae_trains_on_a_sparse_h5ad(compose_train, tmp_path):
    from vaelab.train import train

    table = count_table(cells=300, genes=20, types=3, seed=2)
    sparse, _ = write_both(tmp_path, table["counts"], table["cell_type"])
    cfg = compose_train("experiment=counts", f"data.path={sparse}", "data.id_column=null",
                        "trainer.max_epochs=2", "logger=none", "metrics=none")  # fmt: skip
    results, objects = train(cfg)
    assert np.isfinite(results["test/elbo"])
    library = objects["model"].likelihood.library.item()
    train_rows = objects["datamodule"].indices["train"]
    assert library == torch.from_numpy(table["counts"][train_rows.numpy()]).sum(1).float().median()


def test_an_unlabelled_sparse_h5ad_sets_up(tmp_path):
    table = count_table(cells=100, genes=10, types=2, seed=3)
    sparse, _ = write_both(tmp_path, table["counts"], table["cell_type"])
    dm = TabularDataModule(path=str(sparse), log1p=True)
    dm.setup("fit")
    assert (dm.splits["train"][1] == -1).all() and dm.shape == (10,)
    assert len(dm.row_ids("test")) == len(dm.indices["test"])  # obs_names: the ids
