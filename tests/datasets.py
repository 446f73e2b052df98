"""Tiny datasets written in the real formats: CIFAR-10's python batches, CelebA's folder of JPEGs
with its partition file, and tables as CSV, TSV, NPY, NPZ, Parquet and h5ad."""

import pickle
from pathlib import Path

import numpy as np


def write_cifar_like(root: Path, per_batch: int = 20) -> Path:
    """root/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta as the official
    pickles (dicts of a (N, 3072) uint8 array and a list of labels); images brighter by class."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch)
        data = rng.integers(0, 60, (per_batch, 3072)) + 19 * labels[:, None]
        batch = {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": data.astype(np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        with open(folder / name, "wb") as file:
            pickle.dump(batch, file, protocol=2)
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump(meta, file, protocol=2)
    return root


def write_celeba_like(root: Path, counts=(8, 2, 2)) -> Path:
    """root/celeba/ with img_align_celeba/*.jpg (178x218, as the aligned photos are) and
    list_eval_partition.txt putting counts[0], counts[1], counts[2] of them in train/val/test."""
    from PIL import Image

    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    number = 0
    for code, count in enumerate(counts):
        for _ in range(count):
            number += 1
            name = f"{number:06d}.jpg"
            pixels = rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=90)
            lines.append(f"{name} {code}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def expression_matrix(n: int = 120, genes: int = 12, seed: int = 0):
    """(counts (n, genes) float, cell types (n,) str, cell ids (n,) str): two cell types with
    different mean expression, so an embedding has something to separate."""
    rng = np.random.default_rng(seed)
    kinds = np.asarray(["B cell", "T cell"])[rng.integers(0, 2, n)]
    rate = np.where((kinds == "T cell")[:, None], 8.0, 2.0) * np.linspace(0.5, 1.5, genes)
    counts = rng.poisson(rate).astype(float)
    ids = np.asarray([f"cell{i:04d}" for i in range(n)])
    return counts, kinds, ids


def write_table(path: Path, counts, kinds=None, ids=None) -> Path:
    """The matrix in the format that `path`'s suffix names, with columns cell, cell_type and
    gene0, gene1, ... (an .npz holds arrays x, cell_type and cell; an .npy only x)."""
    genes = [f"gene{j}" for j in range(counts.shape[1])]
    columns = {}
    if ids is not None:
        columns["cell"] = ids
    if kinds is not None:
        columns["cell_type"] = kinds
    if path.suffix in (".csv", ".tsv"):
        sep = "\t" if path.suffix == ".tsv" else ","
        header = [*columns, *genes]
        rows = [
            [*(str(c[i]) for c in columns.values()), *(f"{v:g}" for v in counts[i])]
            for i in range(len(counts))
        ]
        path.write_text("\n".join(sep.join(row) for row in [header, *rows]) + "\n")
    elif path.suffix == ".npy":
        np.save(path, counts)
    elif path.suffix == ".npz":
        np.savez(path, x=counts, **columns)
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = {**columns, **{g: counts[:, j] for j, g in enumerate(genes)}}
        pq.write_table(pa.table(table), path)
    elif path.suffix == ".h5ad":
        import anndata
        import pandas as pd

        obs = pd.DataFrame({"cell_type": kinds}, index=ids)
        var = pd.DataFrame(index=genes)
        anndata.AnnData(counts.astype(np.float32), obs=obs, var=var).write_h5ad(path)
    return path


def _grid(sizes: tuple[int, ...]) -> np.ndarray:
    """Every point of a factor grid, row-major: (N, K) int64."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), 1).astype(np.int64)


def _images(classes: np.ndarray, channels: int) -> np.ndarray:
    """(N, 64, 64[, C]) uint8 images that differ by their row: the factors written as pixels."""
    n = len(classes)
    images = np.zeros((n, 64, 64, channels), np.uint8)
    images[:, 0, : classes.shape[1], :] = (classes * 7 % 256)[:, :, None]
    images[:, 1, :4, :] = (np.arange(n) % 251)[:, None, None]
    return images[..., 0] if channels == 1 else images


DSPRITES_SIZES = (1, 3, 2, 4, 3, 3)  # colour, shape, scale, orientation, x, y: a small grid


def write_dsprites_like(
    folder: Path, compressed: bool = True, sizes: tuple[int, ...] = DSPRITES_SIZES
) -> Path:
    """dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz as published (imgs (N, 64, 64) uint8 of
    0/1, latents_classes (N, 6) int64 row-major, latents_values (N, 6) float64), over a small
    grid of the same six factors."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = _grid(sizes)
    imgs = (_images(classes, 1) % 2).astype(np.uint8)
    save = np.savez_compressed if compressed else np.savez
    path = folder / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    save(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(np.float64))
    return path


def write_shapes3d_like(folder: Path, sizes: tuple[int, ...]) -> Path:
    """3dshapes.h5 as published: images (N, 64, 64, 3) uint8 and labels (N, 6) float64."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    classes = _grid(sizes)
    with h5py.File(folder / "3dshapes.h5", "w") as file:
        file.create_dataset("images", data=_images(classes, 3))
        file.create_dataset("labels", data=classes.astype(np.float64))
    return folder / "3dshapes.h5"


def write_mpi3d_like(folder: Path, sizes: tuple[int, ...], variant: str = "toy") -> Path:
    """mpi3d_<variant>.npz as published: images (N, 64, 64, 3) uint8, stored uncompressed."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"mpi3d_{variant}.npz", images=_images(_grid(sizes), 3))
    return folder / f"mpi3d_{variant}.npz"
