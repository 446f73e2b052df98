"""CIFAR-10, CelebA and the user's own tables, on files written in the real formats."""

import csv
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import cli, one_line_error
from tests.datasets import expression_matrix, write_celeba_like, write_cifar_like, write_table
from vaelab.config.schema import validate
from vaelab.data import CelebADataModule, CIFAR10DataModule, TabularDataModule
from vaelab.embed import main as embed_main
from vaelab.errors import ConfigError, DataError
from vaelab.train import main as train_main
from vaelab.train import train

TABLE_FORMATS = [".csv", ".tsv", ".npy", ".npz", ".parquet", ".h5ad"]


def _check_splits(dm, sizes: dict[str, int]) -> None:
    """Sizes as expected, and no example in two splits of the same source."""
    assert {split: len(x) for split, (x, _) in dm.splits.items()} == sizes
    by_source: dict[str, list] = {}
    for split, index in dm.indices.items():
        by_source.setdefault(dm.sources[split], []).extend(index.tolist())
    for rows in by_source.values():
        assert len(rows) == len(set(rows))


# --- CIFAR-10 ---------------------------------------------------------------------------------


def test_cifar10_reads_the_python_batches(tmp_path):
    write_cifar_like(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=10)
    dm.setup()
    _check_splits(dm, {"train": 90, "val": 10, "test": 20})
    assert dm.shape == (3, 32, 32) and dm.splits["train"][0].dtype == torch.uint8
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(10))
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as file:
        official = pickle.load(file, encoding="latin1")
    assert dm.splits["test"][0][3].flatten().tolist() == official["data"][3].tolist()
    assert dm.splits["test"][1].tolist() == official["labels"]
    again = CIFAR10DataModule(data_dir=str(tmp_path / "cifar-10-batches-py"), val_size=10)
    again.setup()
    assert torch.equal(again.indices["val"], dm.indices["val"])


def test_cifar10_bad_files_name_the_file(tmp_path):
    folder = write_cifar_like(tmp_path) / "cifar-10-batches-py"
    with pytest.raises(DataError, match="CIFAR-10 not found: looked in .* data_batch_1"):
        CIFAR10DataModule(data_dir=str(tmp_path / "elsewhere")).setup()

    (folder / "data_batch_2").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(DataError, match="data_batch_2 is not a CIFAR-10 python batch"):
        CIFAR10DataModule(data_dir=str(tmp_path), val_size=10).setup()

    with open(folder / "data_batch_2", "wb") as file:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, file, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_2: expected N rows of 3072 bytes"):
        CIFAR10DataModule(data_dir=str(tmp_path), val_size=10).setup()

    # A pickle that would run code when loaded is refused, not executed.
    class Exploit:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    with open(folder / "data_batch_2", "wb") as file:
        pickle.dump({"data": Exploit(), "labels": []}, file, protocol=2)
    with pytest.raises(DataError, match="refusing to load"):
        CIFAR10DataModule(data_dir=str(tmp_path), val_size=10).setup()
    assert not (tmp_path / "pwned").exists()


def test_cifar10_download_goes_through_torchvision(tmp_path, monkeypatch, http_mirror):
    """torchvision's download and extraction, from a local mirror of a tarball in the official
    layout (its checksums replace torchvision's, which only the official files match)."""
    import torchvision.datasets

    mirror, url = http_mirror
    folder = write_cifar_like(tmp_path / "built") / "cifar-10-batches-py"
    with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")

    def md5(path: Path) -> str:
        return hashlib.md5(path.read_bytes()).hexdigest()

    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "url", url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(cls, "tgz_md5", md5(mirror / "cifar-10-python.tar.gz"))
    for attribute in ("train_list", "test_list"):
        files = [[name, md5(folder / name)] for name, _ in getattr(cls, attribute)]
        monkeypatch.setattr(cls, attribute, files)
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / "batches.meta")})
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="not found"):
        CIFAR10DataModule(data_dir=str(data_dir)).prepare_data()
    dm = CIFAR10DataModule(data_dir=str(data_dir), download=True, val_size=10)
    dm.prepare_data()
    assert (data_dir / "cifar-10-batches-py" / "test_batch").is_file()
    dm.setup()
    assert len(dm.splits["test"][0]) == 20


# --- CelebA -----------------------------------------------------------------------------------


def test_celeba_keeps_the_official_partition_and_caches_the_decoded_images(tmp_path):
    write_celeba_like(tmp_path)
    dm = CelebADataModule(data_dir=str(tmp_path))
    dm.setup()
    _check_splits(dm, {"train": 8, "val": 2, "test": 2})
    assert dm.shape == (3, 64, 64) and dm.splits["train"][0].dtype == torch.uint8
    assert dm.row_ids("test").tolist() == ["000011.jpg", "000012.jpg"]
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 and (y == -1).all()

    # The centre 148x148 of the 178x218 photo, resized to 64x64.
    from PIL import Image

    folder = tmp_path / "celeba"
    with Image.open(folder / "img_align_celeba" / "000011.jpg") as image:
        photo = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    top, left = (218 - 148) // 2, (178 - 148) // 2
    crop = photo[:, top : top + 148, left : left + 148].float().unsqueeze(0)
    expected = torch.nn.functional.interpolate(crop, size=64, mode="bilinear", antialias=True)
    assert (dm.splits["test"][0][0].float() - expected[0]).abs().mean() < 3  # of 255

    # Later runs read the cache alone: with the JPEGs gone the data is the same.
    cache = folder / "vaelab_cache_crop148_64px.npz"
    assert cache.is_file()
    for jpeg in (folder / "img_align_celeba").glob("*.jpg"):
        jpeg.unlink()
    again = CelebADataModule(data_dir=str(tmp_path))
    again.setup()
    assert torch.equal(again.splits["train"][0], dm.splits["train"][0])


def test_celeba_missing_or_broken_files(tmp_path):
    with pytest.raises(DataError, match="CelebA not found.*img_align_celeba.*mmlab"):
        CelebADataModule(data_dir=str(tmp_path)).setup()
    folder = write_celeba_like(tmp_path) / "celeba"
    (folder / "img_align_celeba" / "000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode .*000003.jpg"):
        CelebADataModule(data_dir=str(tmp_path)).setup()
    (folder / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(DataError, match="1 images listed .* are missing .* 000003.jpg"):
        CelebADataModule(data_dir=str(tmp_path)).setup()
    assert not list(folder.glob("*.npz"))  # nothing half-written
    (folder / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(DataError, match="list_eval_partition.txt, line 1"):
        CelebADataModule(data_dir=str(tmp_path)).setup()


# --- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", TABLE_FORMATS)
def test_table_formats(tmp_path, suffix):
    counts, kinds, ids = expression_matrix()
    path = write_table(tmp_path / f"matrix{suffix}", counts, kinds, ids)
    named = suffix not in (".npy",)
    dm = TabularDataModule(
        path=str(path),
        label_column="cell_type" if named else None,
        id_column="cell" if named and suffix != ".h5ad" else None,  # h5ad: obs_names
        log1p=True,
    )
    dm.setup()
    _check_splits(dm, {"train": 96, "val": 12, "test": 12})
    assert dm.shape == (12,)
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    train = dm.splits["train"][0]
    torch.testing.assert_close(train.mean(0), torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.std(0), torch.ones(12), atol=1e-5, rtol=0)
    # The transform is the training split's: log1p, then that split's mean and spread.
    raw = torch.log1p(torch.as_tensor(counts, dtype=torch.float32))
    test_rows = dm.indices["test"]
    mean, std = raw[dm.indices["train"]].mean(0), raw[dm.indices["train"]].std(0)
    torch.testing.assert_close(dm.splits["test"][0], (raw[test_rows] - mean) / std)
    if named:
        assert dm.fitted["classes"] == ["B cell", "T cell"]
        expected = torch.as_tensor(kinds[test_rows.numpy()] == "T cell").long()
        assert torch.equal(dm.splits["test"][1], expected)
        assert dm.row_ids("test").tolist() == ids[test_rows.numpy()].tolist()
    else:
        assert (y == -1).all() and dm.row_ids("test") is None


def _error(tmp_path, text: str, suffix: str = ".csv", **kwargs) -> str:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises((DataError, ConfigError)) as caught:
        TabularDataModule(path=str(path), **kwargs).setup()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_tables_give_one_line_errors_that_name_the_file(tmp_path):
    assert "bad.csv is empty" in _error(tmp_path, "")
    assert "bad.csv is empty" in _error(tmp_path, "a,b\n")
    assert "bad.csv, line 3: 1 fields where the header has 2" in _error(tmp_path, "a,b\n1,2\n3\n")
    message = _error(tmp_path, "a,b\n1,x\n" + "1,2\n" * 9)
    assert "bad.csv: column 'b' is not numeric (row 1: 'x')" in message
    message = _error(tmp_path, "a,b\n1,NA\n" + "1,2\n" * 9)
    assert "bad.csv: missing or infinite values in the columns b" in message
    assert "data.impute" in message
    assert "infinite values in the columns a" in _error(tmp_path, "a,b\ninf,1\n" + "1,2\n" * 9)
    assert "has no column 'kind' (data.label_column)" in _error(
        tmp_path, "a,b\n" + "1,2\n" * 9, label_column="kind"
    )
    assert "needs counts >= 0" in _error(tmp_path, "a,b\n-1,2\n" + "1,2\n" * 9, log1p=True)
    np.save(tmp_path / "cube.npy", np.zeros((4, 2, 2)))
    with pytest.raises(DataError, match=r"cube.npy: x must be a 2-D numeric array"):
        TabularDataModule(path=str(tmp_path / "cube.npy")).setup()
    with pytest.raises(ConfigError, match="use a file ending in"):
        TabularDataModule(path=str(tmp_path / "matrix.xlsx")).setup()
    with pytest.raises(DataError, match="nope.csv: no such file"):
        TabularDataModule(path=str(tmp_path / "nope.csv")).setup()


def test_missing_values_are_imputed_with_the_training_splits_statistics(tmp_path):
    rows = ["a,b"] + [f"{i},{'' if i % 5 == 0 else 2 * i}" for i in range(40)]
    (tmp_path / "gaps.csv").write_text("\n".join(rows) + "\n")
    dm = TabularDataModule(path=str(tmp_path / "gaps.csv"), impute="median", standardize=False)
    dm.setup()
    b = torch.as_tensor([float("nan") if i % 5 == 0 else 2.0 * i for i in range(40)])
    median = torch.nanmedian(b[dm.indices["train"]])
    assert dm.fitted["fill"][1] == median
    for split, (x, _) in dm.splits.items():
        gaps = torch.isnan(b[dm.indices[split]])
        assert not torch.isnan(x).any() and (x[gaps, 1] == median).all()


def test_bernoulli_is_refused_on_standardised_or_unbounded_values(compose_train, tmp_path):
    counts, kinds, ids = expression_matrix()
    path = write_table(tmp_path / "m.csv", counts, kinds, ids)
    cfg = compose_train("experiment=tabular", f"data.path={path}", "model.likelihood=bernoulli")
    with pytest.raises(ConfigError, match="data.standardize=true makes them any real number"):
        validate(cfg)
    cfg = compose_train(
        "experiment=tabular", f"data.path={path}", "model.likelihood=bernoulli",
        "data.standardize=false", "data.label_column=cell_type", "data.id_column=cell",
    )  # fmt: skip
    validate(cfg)
    with pytest.raises(ConfigError, match=r"needs data in \[0, 1\], but the training data spans"):
        train(cfg)


# --- training on each -------------------------------------------------------------------------


@pytest.mark.parametrize("experiment", ["cifar10", "celeba", "tabular"])
def test_one_epoch_with_each_preset(compose_train, tmp_path, experiment):
    if experiment == "cifar10":
        data = [f"data.data_dir={write_cifar_like(tmp_path / 'cifar')}", "data.val_size=10"]
    elif experiment == "celeba":
        data = [f"data.data_dir={write_celeba_like(tmp_path / 'celeba', (16, 4, 4))}"]
    else:
        counts, kinds, ids = expression_matrix()
        path = write_table(tmp_path / "m.parquet", counts, kinds, ids)
        data = [f"data.path={path}", "data.label_column=cell_type", "data.id_column=cell"]
    cfg = compose_train(
        f"experiment={experiment}", *data, "trainer.max_epochs=1", "data.batch_size=8",
        "iw_samples=2", "callbacks.images.every_n_epochs=1",
    )  # fmt: skip
    validate(cfg)
    results, objects = train(cfg)
    # Gaussian densities can exceed 1, so the ELBO has no sign to check here.
    assert np.isfinite(results["test/elbo"]) and np.isfinite(results["test/nll_iw"])
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    images = run_dir / "images"
    if experiment == "tabular":
        assert not images.exists() or not list(images.glob("reconstructions*.png"))
    else:
        assert (images / "reconstructions.png").is_file()


def test_tabular_round_trip_train_embed_and_embed_a_new_file(tmp_path, capfd, in_process):
    """Train on a CSV through the CLI; the embeddings of split=all line up with the file's rows
    by id; a new file goes through the transform saved in the checkpoint, not a new one."""
    counts, kinds, ids = expression_matrix(n=150)
    table = write_table(tmp_path / "cells.csv", counts, kinds, ids)
    train_dir = tmp_path / "train"
    args = [
        "experiment=tabular",
        f"data.path={table}",
        "data.label_column=cell_type",
        "data.id_column=cell",
        "data.log1p=true",
        "trainer.max_epochs=2",
        "callbacks.rich_progress_bar=null",
        f"hydra.run.dir={train_dir}",
    ]
    code, err = cli(train_main, args, capfd)
    assert code == 0, err[-3000:]
    ckpt = train_dir / "checkpoints" / "best.ckpt"

    out = tmp_path / "embed_all"
    args = [f"ckpt_path={ckpt}", "split=all", "format=csv", f"hydra.run.dir={out}"]
    code, err = cli(embed_main, args, capfd)
    assert code == 0, err[-3000:]
    with open(out / "embeddings.csv") as file:
        rows = list(csv.DictReader(file))
    assert [r["id"] for r in rows] == ids.tolist()  # the file's rows, in its order
    # Text labels stay text, their codes (positions in the sorted names) beside them.
    assert [r["label"] for r in rows] == kinds.tolist()
    assert [r["label_code"] for r in rows] == [str(int(k == "T cell")) for k in kinds]
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert (out / "embeddings.png").stat().st_size > 1000

    # The new file: 20 of the same cells, shuffled, with no label column. Had the transform been
    # fitted again on it, its embeddings would differ from those above.
    pick = np.random.default_rng(1).permutation(150)[:20]
    new = write_table(tmp_path / "new.csv", counts[pick], None, ids[pick])
    out_new = tmp_path / "embed_new"
    args = [f"ckpt_path={ckpt}", f"data.path={new}", "data.label_column=null"]
    code, err = cli(
        embed_main, [*args, "split=all", "format=csv", f"hydra.run.dir={out_new}"], capfd
    )
    assert code == 0, err[-3000:]
    with open(out_new / "embeddings.csv") as file:
        new_rows = {r["id"]: r for r in csv.DictReader(file)}
    assert sorted(new_rows) == sorted(ids[pick].tolist())
    by_id = {r["id"]: r for r in rows}
    z_names = [c for c in rows[0] if c.startswith("z")]
    for cell, row in new_rows.items():
        np.testing.assert_allclose(
            [float(row[z]) for z in z_names], [float(by_id[cell][z]) for z in z_names], atol=1e-5
        )

    # A file that lacks a trained feature is refused by name.
    write_table(tmp_path / "fewer.csv", counts[:, :-1], None, ids)
    args = [f"ckpt_path={ckpt}", f"data.path={tmp_path / 'fewer.csv'}", "data.label_column=null"]
    last = one_line_error(*cli(embed_main, [*args, f"hydra.run.dir={tmp_path / 'x'}"], capfd))
    assert "fewer.csv lacks the feature columns gene11" in last


def test_the_embedding_picture_names_its_labels_in_a_legend():
    """A colour and a legend entry per label (its name, where the labels are text; grey for
    none); a colour bar where the labels are too many integers to name."""
    from vaelab.embed import embedding_figure

    z = np.random.default_rng(0).normal(size=(60, 4))
    codes = np.repeat([0, 1, -1], 20)
    (axes,) = embedding_figure(z, codes, names=["B cell", "T cell"]).axes
    legend = axes.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["no label", "B cell", "T cell"]
    assert legend.get_title().get_text() == "label" and axes.get_xlabel() == "pca 1"
    (axes,) = embedding_figure(z, np.repeat([3, 7, 9], 20)).axes
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["3", "7", "9"]
    figure = embedding_figure(z, np.arange(60))  # 60 integer labels: a colour bar
    assert figure.axes[0].get_legend() is None and figure.axes[1].get_ylabel() == "label"


def _h5ad(path: Path, counts, kinds, ids) -> Path:
    """As scanpy keeps a count table: X normalised (log1p of counts per 10,000), the raw counts
    in layers["counts"], the cell types in obs, the cells' names as obs_names."""
    import anndata
    import pandas as pd

    normalised = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    genes = [f"gene{j}" for j in range(counts.shape[1])]
    adata = anndata.AnnData(normalised, obs=pd.DataFrame({"cell_type": kinds}, index=ids),
                            var=pd.DataFrame(index=genes))  # fmt: skip
    adata.layers["counts"] = counts.astype(np.float32)
    adata.write_h5ad(path)
    return path


def test_an_h5ad_count_table_trains_with_experiment_counts_and_embeds_back_into_a_copy(
    tmp_path, capfd, in_process
):
    """experiment=counts as printed on an .h5ad (ids: its obs_names) with data.layer=counts;
    vaelab-embed format=h5ad writes a copy of the file with the codes in obsm["X_vaelab"],
    the same codes format=csv writes, row for row."""
    import anndata

    counts, kinds, ids = expression_matrix(n=150)
    source = _h5ad(tmp_path / "cells.h5ad", counts, kinds, ids)
    train_dir = tmp_path / "train"
    args = ["experiment=counts", f"data.path={source}", "data.layer=counts",
            "trainer.max_epochs=2", "callbacks.rich_progress_bar=null",
            f"hydra.run.dir={train_dir}"]  # fmt: skip
    code, err = cli(train_main, args, capfd)
    assert code == 0, err[-3000:]
    ckpt = train_dir / "checkpoints" / "best.ckpt"
    written = {}
    for fmt in ("h5ad", "csv"):
        args = [f"ckpt_path={ckpt}", "split=all", f"format={fmt}"]
        code, err = cli(embed_main, [*args, f"hydra.run.dir={tmp_path / fmt}"], capfd)
        assert code == 0, err[-3000:]
        written[fmt] = tmp_path / fmt / f"embeddings.{fmt}"
    copy, original = anndata.read_h5ad(written["h5ad"]), anndata.read_h5ad(source)
    assert copy.obs_names.tolist() == ids.tolist()  # every cell, in the file's order
    assert copy.obs["cell_type"].tolist() == kinds.tolist()
    np.testing.assert_array_equal(copy.X, original.X)
    np.testing.assert_array_equal(copy.layers["counts"], original.layers["counts"])
    with open(written["csv"]) as file:
        rows = list(csv.DictReader(file))
    assert [r["id"] for r in rows] == ids.tolist() and [r["label"] for r in rows] == kinds.tolist()
    z = np.asarray([[float(r[f"z{j}"]) for j in range(10)] for r in rows])
    assert copy.obsm["X_vaelab"].shape == (150, 10)
    np.testing.assert_allclose(copy.obsm["X_vaelab"], z, rtol=1e-5, atol=1e-6)

    # A layer the file lacks, a layer of a CSV, an AnnData copy of a CSV's run: one line each.
    bad = [f"ckpt_path={ckpt}", "++data.layer=raw", f"hydra.run.dir={tmp_path / 'bad'}"]
    last = one_line_error(*cli(embed_main, bad, capfd))
    assert "cells.h5ad has no layer 'raw' (data.layer); its layers: counts" in last
    csv_table = write_table(tmp_path / "cells.csv", counts, kinds, ids)
    bad = [f"ckpt_path={ckpt}", f"data.path={csv_table}", f"hydra.run.dir={tmp_path / 'bad2'}"]
    last = one_line_error(*cli(embed_main, bad, capfd))
    assert "data.layer=counts picks a layer of an AnnData .h5ad" in last
    args = ["experiment=counts", f"data.path={csv_table}", "trainer.max_epochs=1",
            f"hydra.run.dir={tmp_path / 'csv_run'}"]  # fmt: skip
    assert cli(train_main, args, capfd)[0] == 0  # experiment=counts on a CSV, as printed
    ckpt = tmp_path / "csv_run" / "checkpoints" / "best.ckpt"
    bad = [f"ckpt_path={ckpt}", "format=h5ad", f"hydra.run.dir={tmp_path / 'bad3'}"]
    last = one_line_error(*cli(embed_main, bad, capfd))
    assert "format=h5ad writes a copy of the input AnnData" in last and "cells.csv" in last
