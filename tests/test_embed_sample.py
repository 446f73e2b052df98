"""vaelab-embed and vaelab-sample on the checkpoint of a short digits run."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from tests.conftest import cli, console, console_here
from tests.wandb_records import run_contents
from vaelab.data import DigitsDataModule
from vaelab.embed import main as embed_main
from vaelab.embed import write_embeddings
from vaelab.models import VAE
from vaelab.sample import main as sample_main
from vaelab.train import main as train_main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("train")
    args = ["trainer.max_epochs=3", "callbacks.images=null", "callbacks.rich_progress_bar=null"]
    with console_here(tmp):
        assert console(train_main, [*args, f"hydra.run.dir={tmp / 'run'}"]) == 0
    return Path(json.loads((tmp / "run" / "results.json").read_text())["best_ckpt"])


def test_embed_all_splits_lines_up_with_the_data(checkpoint, tmp_path, capfd, in_process):
    out = tmp_path / "embed"
    args = [f"ckpt_path={checkpoint}", "split=all", "format=csv", "projections=[tsne]"]
    code, err = cli(embed_main, [*args, f"hydra.run.dir={out}"], capfd)
    assert code == 0, err[-3000:]
    with open(out / "embeddings.csv") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[:4] == ["index", "split", "label", "z0"]
    # Every example once, in the order of the data itself.
    assert [int(r["index"]) for r in rows] == list(range(1797))

    dm = DigitsDataModule()
    dm.setup()
    model = VAE.load_from_checkpoint(checkpoint).eval()
    test_rows = [rows[i] for i in dm.indices["test"].tolist()]
    assert {r["split"] for r in test_rows} == {"test"}
    x, y = dm.splits["test"]
    assert [int(r["label"]) for r in test_rows] == y.tolist()
    mu = model.encode(x).mean.detach().numpy()
    np.testing.assert_allclose(
        [[float(r[f"z{j}"]) for j in range(8)] for r in test_rows], mu, rtol=1e-5, atol=1e-6
    )
    # Indices point back into the source data: the rows of sklearn's digits.
    from sklearn.datasets import load_digits

    source = torch.as_tensor(load_digits().images, dtype=torch.float32).div(16)
    first = int(dm.indices["train"][0])
    assert rows[first]["split"] == "train"
    torch.testing.assert_close(source[first], dm.splits["train"][0][0, 0])
    for picture in ("embeddings.png", "embeddings_tsne.png"):
        assert Image.open(out / picture).size[0] > 100


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_embedding_formats_round_trip(tmp_path, fmt):
    z = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    labels, index, split = np.arange(5), np.array([4, 0, 3, 1, 2]), np.array(["test"] * 5)
    path = write_embeddings(tmp_path, fmt, z, {"index": index, "split": split, "label": labels})
    if fmt == "npy":
        np.testing.assert_array_equal(np.load(path), z)
        np.testing.assert_array_equal(np.load(tmp_path / "indices.npy"), index)
        np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), labels)
    else:
        table = pq.read_table(path).to_pydict()
        assert table["index"] == index.tolist() and table["label"] == labels.tolist()
        np.testing.assert_array_equal(np.array([table[f"z{j}"] for j in range(3)]).T, z)


def test_sample_writes_its_pictures_in_its_own_directory(checkpoint, tmp_path, capfd, in_process):
    out = tmp_path / "sample"
    code, err = cli(sample_main, [f"ckpt_path={checkpoint}", "n=16", f"hydra.run.dir={out}"], capfd)
    assert code == 0, err[-3000:]
    for name in ("samples", "interpolation", "traversals"):
        with Image.open(out / "images" / f"{name}.png") as image:
            assert image.mode in ("RGB", "RGBA") and min(image.size) >= 32
    # Traversals: a row per dimension (8, under max_dims=10), named, by the test batch's KL.
    with Image.open(out / "images" / "traversals.png") as image:
        rows = image.text["Rows"].splitlines()
    assert len(rows) == 8 and len({r.split(" · ")[0] for r in rows}) == 8
    kl = [float(r.split(" · ")[1].removesuffix(" nats")) for r in rows]
    assert kl == sorted(kl, reverse=True) and re.fullmatch(r"z\d · \d+\.\d\d nats", rows[0])
    assert not (checkpoint.parent.parent / "images").exists()  # no image callback: nothing there


def test_sample_adds_its_pictures_to_the_training_runs_wandb_run(tmp_path, capfd, in_process):
    train_dir, out = tmp_path / "train", tmp_path / "sample"
    args = ["logger=wandb", "debug=limit", "callbacks.rich_progress_bar=null"]
    code, err = cli(train_main, [*args, f"hydra.run.dir={train_dir}"], capfd)
    assert code == 0, err[-3000:]
    args = [f"ckpt_path={train_dir / 'checkpoints' / 'best.ckpt'}", f"hydra.run.dir={out}"]
    code, err = cli(sample_main, args, capfd)
    assert code == 0, err[-3000:]
    contents = run_contents(out)
    assert contents["id"] == (train_dir / "wandb_id").read_text().strip()
    logged = {k for row in contents["history"] for k in row}
    assert {"sample/samples", "sample/interpolation", "sample/traversals"} <= logged


def test_the_mixture_sampler_lets_any_model_generate(compose_train, tmp_path, capfd, in_process):
    """sampler=gmm: a Gaussian mixture fitted to the training embeddings, decoded; it gives an
    autoencoder, which has no prior, samples (and is what the prior sampler refuses for it)."""
    from omegaconf import OmegaConf

    from vaelab.errors import ConfigError
    from vaelab.sample import _sampler
    from vaelab.train import train

    cfg = compose_train("experiment=digits", "model=ae", "trainer.max_epochs=5", "logger=none",
                        "callbacks.images=null")  # fmt: skip
    results, objects = train(cfg)
    model, datamodule = objects["model"].eval(), objects["datamodule"]
    sampling = {"sampler": "gmm", "gmm_components": 4, "seed": 0, "ckpt_path": "ae.ckpt"}
    x = _sampler(OmegaConf.create(sampling), model, datamodule)(180)
    assert x.shape == (180, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    # As varied as the reconstructions of the 180 test digits, not one picture many times.
    recon = model.reconstruct(datamodule.splits["test"][0])
    assert x.flatten(1).std(0).mean() > 0.5 * recon.flatten(1).std(0).mean()
    again = _sampler(OmegaConf.create(sampling), model, datamodule)(180)
    assert torch.equal(x, again)  # the seed fixes the mixture and its draws
    with pytest.raises(ConfigError, match="is an AutoEncoder: it has no prior to sample; use"):
        _sampler(OmegaConf.create(sampling | {"sampler": "prior"}), model, datamodule)

    out = tmp_path / "sample"
    args = [f"ckpt_path={results['best_ckpt']}", "sampler=gmm", "n=16", f"hydra.run.dir={out}"]
    code, err = cli(sample_main, args, capfd)
    assert code == 0, err[-3000:]
    for name in ("samples", "interpolation", "traversals"):
        with Image.open(out / "images" / f"{name}.png") as image:
            image.verify()
