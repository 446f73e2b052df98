"""The in-memory datamodules on files written in the real formats, used without a Trainer."""

import gzip
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import write_mnist_like
from vaelab.data import DigitsDataModule, FashionMNISTDataModule, MNISTDataModule
from vaelab.data.batches import TensorBatches
from vaelab.data.idx import read_idx, write_idx
from vaelab.errors import DataError


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    array = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_idx_truncated_and_corrupt_files_name_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"{path} is truncated"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match=f"{path} is not an IDX file"):
        read_idx(path)
    gz = tmp_path / "x.gz"
    gz.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match=f"cannot read {gz}"):
        read_idx(gz)


def test_digits_splits_are_fixed_disjoint_and_complete():
    first, second = DigitsDataModule(seed=1), DigitsDataModule(seed=2)
    first.setup()
    second.setup()
    assert first.shape == (1, 8, 8)
    sizes = {name: len(x) for name, (x, _) in first.splits.items()}
    assert sizes == {"train": 1437, "val": 180, "test": 180}
    for name in sizes:  # the run seed changes the batch order, never the split
        torch.testing.assert_close(first.splits[name][0], second.splits[name][0])
    rows = torch.cat([x.flatten(1) for x, _ in first.splits.values()])
    assert len(rows) == 1797
    x, y = first.splits["train"]
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 and y.dtype == torch.int64


def test_batches_are_float_images_and_the_order_depends_on_seed_and_epoch():
    dm = DigitsDataModule(batch_size=100, seed=7)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 15  # 1437 examples, last batch partial
    batches = list(loader)
    assert sum(len(x) for x, _ in batches) == 1437
    x, y = batches[0]
    assert x.shape == (100, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    again = next(iter(dm.train_dataloader()))[1]
    torch.testing.assert_close(again, y)  # same seed and epoch: same order
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))[1], y)
    val = [y for _, y in dm.val_dataloader()]
    torch.testing.assert_close(torch.cat(val), dm.splits["val"][1])  # val is not shuffled


def test_shards_of_ranks_do_not_overlap():
    x = torch.arange(103).float().unsqueeze(1)
    shards = [
        torch.cat([b for b, _ in TensorBatches(x, x.long()[:, 0], 10, True, False, 3, r, 4)])
        for r in range(4)
    ]
    assert all(len(s) == 25 for s in shards)
    seen = torch.cat(shards).long().flatten().tolist()
    assert len(set(seen)) == 100


@pytest.mark.parametrize("layout", ["flat-gz", "flat-raw", "torchvision"])
def test_mnist_reads_every_layout(tmp_path, layout):
    if layout == "torchvision":
        write_mnist_like(tmp_path / "MNIST" / "raw", gz=False)
    else:
        write_mnist_like(tmp_path, gz=layout == "flat-gz")
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=30, batch_size=64)
    dm.prepare_data()
    dm.setup()
    assert dm.shape == (1, 28, 28)
    assert {k: len(v[0]) for k, v in dm.splits.items()} == {"train": 270, "val": 30, "test": 100}
    assert dm.splits["train"][0].dtype == torch.uint8  # held compactly, converted per batch
    x, _ = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.max() <= 1.0 and x.shape == (64, 1, 28, 28)


def test_missing_files_name_the_folders_and_files(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message
    assert str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "data.download=true" in message
    assert "\n" not in message


def test_images_and_labels_of_different_lengths_are_refused(tmp_path):
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: expected N images"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()


def test_fashion_mnist_from_the_debian_package(fashion_mnist_debian, tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(fashion_mnist_debian))
    dm.setup()
    assert {k: tuple(v[0].shape) for k, v in dm.splits.items()} == {
        "train": (55000, 1, 28, 28),
        "val": (5000, 1, 28, 28),
        "test": (10000, 1, 28, 28),
    }
    assert sorted(dm.splits["test"][1].unique().tolist()) == list(range(10))
    # The same files unpacked into torchvision's layout give the same tensors.
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in fashion_mnist_debian.glob("*.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    unpacked = FashionMNISTDataModule(data_dir=str(tmp_path))
    unpacked.setup()
    torch.testing.assert_close(unpacked.splits["val"][0], dm.splits["val"][0])


def test_download_goes_through_torchvision(tmp_path, monkeypatch, http_mirror):
    """The real torchvision download path, from a local mirror of files in the real format
    (their checksums replace torchvision's list, which only the official files match)."""
    import hashlib

    import torchvision.datasets

    mirror, url = http_mirror
    write_mnist_like(mirror)
    resources = [
        (path.name, hashlib.md5(path.read_bytes()).hexdigest())
        for path in sorted(mirror.glob("*.gz"))
    ]
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [url])
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "resources", resources)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="not found"):
        FashionMNISTDataModule(data_dir=str(data_dir)).prepare_data()
    dm = FashionMNISTDataModule(data_dir=str(data_dir), download=True, val_size=10)
    dm.prepare_data()
    assert (data_dir / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    dm.setup()
    assert len(dm.splits["train"][0]) == 290


def test_binarization_protocols(tmp_path):
    write_mnist_like(tmp_path)
    made = {}
    for mode in ("none", "dynamic", "static"):
        dm = MNISTDataModule(data_dir=str(tmp_path), val_size=30, binarize=mode, batch_size=300)
        dm.setup()
        loader = dm.train_dataloader()
        first = next(iter(loader))[0]
        loader.sampler.set_epoch(1)
        second = next(iter(loader))[0]
        made[mode] = (dm, first, second)
    grey = made["none"][1]
    assert len(grey.unique()) > 2
    for mode in ("dynamic", "static"):
        dm, first, second = made[mode]
        assert set(first.unique().tolist()) <= {0.0, 1.0}
        val = next(iter(dm.val_dataloader()))[0]
        assert set(val.unique().tolist()) <= {0.0, 1.0}
        # val and test are one fixed draw, the same every time the data is set up
        again = MNISTDataModule(data_dir=str(tmp_path), val_size=30, binarize=mode)
        again.setup()
        assert torch.equal(again.splits["test"][0], dm.splits["test"][0])
    # dynamic: each epoch draws anew; static: the same draw each epoch (order aside)
    dyn_dm, dyn_first, dyn_second = made["dynamic"]
    stat_dm, stat_first, stat_second = made["static"]
    assert torch.equal(stat_first.sum(0), stat_second.sum(0))
    assert not torch.equal(dyn_first.sum(0), dyn_second.sum(0))
    # Averaged over the draws, a binarised pixel is its grey value.
    assert abs(dyn_first.mean() - grey.mean()) < 0.01
