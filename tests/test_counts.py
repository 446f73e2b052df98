"""Count tables: Poisson and negative binomial likelihoods with the library size as an offset
(scVI's model), their config checks, and a simulated count table whose structure a negative
binomial VAE recovers."""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

from tests.conftest import cli
from vaelab.data.simulate import count_table, write_csv
from vaelab.errors import ConfigError
from vaelab.models.likelihoods import (
    NegativeBinomial,
    Poisson,
    negative_binomial_log_prob,
    poisson_log_prob,
)
from vaelab.train import main as train_main


def counts_and_means(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    mean = torch.rand(6, 30, generator=generator) * 20
    x = torch.poisson(mean, generator=generator)
    x[0, :5] = 0  # zeros, where x log(mean) must be 0
    return x, mean


def test_poisson_log_prob_is_torch_distributions():
    x, mean = counts_and_means()
    expected = torch.distributions.Poisson(mean).log_prob(x).sum(1)
    torch.testing.assert_close(poisson_log_prob(x, mean), expected)


def test_negative_binomial_log_prob_is_torch_distributions():
    x, mean = counts_and_means(1)
    theta = torch.rand(30) * 5 + 0.1
    # torch counts successes before total_count failures: mean = total_count p / (1 - p).
    nb = torch.distributions.NegativeBinomial(total_count=theta, probs=mean / (mean + theta))
    expected = nb.log_prob(x).sum(1)
    torch.testing.assert_close(negative_binomial_log_prob(x, mean, theta.log()), expected)


@pytest.mark.parametrize("likelihood", [Poisson(), NegativeBinomial((30,))])
def test_the_mean_is_the_observed_library_times_the_decoded_share(likelihood):
    x, _ = counts_and_means(2)
    logits = torch.randn(6, 30)
    rate = likelihood.rate(x, logits)
    torch.testing.assert_close(rate.sum(1), x.sum(1))  # the library is an offset, not learned
    share = torch.softmax(logits, 1)
    expected = torch.distributions.Poisson(x.sum(1, keepdim=True) * share).log_prob(x).sum(1)
    if isinstance(likelihood, Poisson):
        torch.testing.assert_close(likelihood.log_prob(x, logits), expected)
    likelihood.fit(x)  # samples use the training split's median library
    torch.testing.assert_close(likelihood.mean(logits).sum(1), x.sum(1).median().expand(6))


@pytest.fixture(scope="module")
def counts_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("counts") / "counts.csv"
    table = count_table(cells=1200, genes=60, types=4, seed=0)
    write_csv(path, table)
    return path, table


def test_count_likelihoods_refuse_transformed_or_non_count_data(
    compose_train, counts_csv, tmp_path
):
    from vaelab import compose
    from vaelab.config.instantiate import build

    path, _ = counts_csv
    with pytest.raises(ConfigError, match="data.log1p=true and data.standardize=true transforms"):
        compose(f"data.path={path}", "experiment=counts", "data.log1p=true",
                "data.standardize=true", output_dir=tmp_path / "a")  # fmt: skip
    text = path.read_text().splitlines()
    cells = text[3].split(",")
    cells[7] = "2.5"  # cell2's g5
    (tmp_path / "bad.csv").write_text("\n".join([*text[:3], ",".join(cells), *text[4:]]))
    cfg = compose_train("experiment=counts", f"data.path={tmp_path / 'bad.csv'}")
    datamodule = build(cfg.data)
    datamodule.setup("fit")
    with pytest.raises(ConfigError, match=r"holds 2.5 \(example 2, feature 'g5'\)"):
        datamodule.check_likelihood("negative_binomial")


def test_a_negative_binomial_vae_recovers_the_simulated_structure(compose_train, counts_csv):
    from vaelab.embeddings import embed, probe_accuracies
    from vaelab.train import train

    path, table = counts_csv
    cfg = compose_train("experiment=counts", f"data.path={path}", "trainer.max_epochs=25",
                        "logger=none", "callbacks.images=null", "metrics=none")  # fmt: skip
    results, objects = train(cfg)
    model, datamodule = objects["model"], objects["datamodule"]
    assert np.isfinite(results["test/elbo"]) and results["test/active_units"] >= 2
    libraries = torch.from_numpy(table["counts"][datamodule.indices["train"].numpy()]).sum(1)
    assert model.likelihood.library.item() == libraries.median().item()
    train_codes = embed(model, datamodule.loader("train"))
    test_codes = embed(model, datamodule.test_dataloader())
    probes = probe_accuracies(train_codes, test_codes)
    assert probes["linear_probe_acc"] > 0.95, probes  # the cell types
    # The true 2-D latent point of each test cell, linearly from its embedding.
    rows = datamodule.indices["test"].numpy()
    fit = LinearRegression().fit(test_codes[0], table["latent"][rows])
    assert fit.score(test_codes[0], table["latent"][rows]) > 0.8


def test_a_count_table_vae_trains_through_the_cli(counts_csv, tmp_path, capfd, in_process):
    path, _ = counts_csv
    run_dir = tmp_path / "run"
    args = ["experiment=counts", f"data.path={path}", "trainer.max_epochs=2",
            "model.likelihood=poisson", "trainer=cpu", f"hydra.run.dir={run_dir}"]  # fmt: skip
    code, err = cli(train_main, args, capfd)
    assert code == 0, err[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert np.isfinite(results["test/elbo"]) and results["test/elbo"] < 0


def test_the_simulated_h5ad_reads_as_experiment_counts_names_it(tmp_path):
    """scripts/simulate_counts.py cells.h5ad: a sparse X of the same counts as the CSV, read with
    the preset's columns (id_column: cell is not an obs column: the ids are the obs_names)."""
    from vaelab.data import TabularDataModule
    from vaelab.data.simulate import write_h5ad

    table = count_table(cells=60, genes=8)
    write_h5ad(tmp_path / "cells.h5ad", table)
    write_csv(tmp_path / "cells.csv", table)
    preset = dict(label_column="cell_type", id_column="cell", log1p=False, standardize=False)
    read = {}
    for suffix in ("h5ad", "csv"):
        read[suffix] = TabularDataModule(path=str(tmp_path / f"cells.{suffix}"), **preset)
        read[suffix].setup()
    for split in ("train", "test"):
        assert read["h5ad"].row_ids(split).tolist() == read["csv"].row_ids(split).tolist()
        sparse_rows = read["h5ad"].splits[split][0]  # SparseRows: the X stays sparse
        torch.testing.assert_close(sparse_rows.to_dense(), read["csv"].splits[split][0])
    assert read["h5ad"].label_names() == ["type0", "type1", "type2", "type3"]
