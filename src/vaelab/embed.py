"""vaelab-embed: the embeddings of a split (mu for a VAE, h for an AE) with labels and example
indices, and a 2-D picture of them, in this command's own run directory.

    vaelab-embed ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt split=all format=csv
    vaelab-embed ckpt_path=... format=h5ad   # an .h5ad's copy, the codes in obsm["X_vaelab"]
"""

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from vaelab.cli.main import hydra_main
from vaelab.errors import ConfigError
from vaelab.extras import require
from vaelab.runs.preemption import preemptible

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FORMATS = ("npy", "csv", "parquet", "h5ad")
OBSM_KEY = "X_vaelab"  # scvi-tools' habit: X_scVI


def write_embeddings(
    out: Path,
    fmt: str,
    z: np.ndarray,
    columns: dict[str, np.ndarray],
    factors: dict[str, np.ndarray] | None = None,
) -> Path:
    """npy: embeddings.npy with <column>s.npy beside it (labels.npy, indices.npy, ...) and, for
    data with known factors, factors.npy (N, K); csv and parquet: one table of the columns, the
    factors by name, then z0, z1, ..."""
    out.mkdir(parents=True, exist_ok=True)
    factors = factors or {}
    if fmt == "npy":
        np.save(out / "embeddings.npy", z)
        for name, values in columns.items():
            np.save(out / f"{'indices' if name == 'index' else name + 's'}.npy", values)
        if factors:
            np.save(out / "factors.npy", np.stack(list(factors.values()), 1))
        return out / "embeddings.npy"
    table = {**columns, **factors, **{f"z{j}": z[:, j] for j in range(z.shape[1])}}
    if fmt == "csv":
        import csv

        with open(out / "embeddings.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(table)
            writer.writerows(zip(*table.values(), strict=True))
        return out / "embeddings.csv"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(table), out / "embeddings.parquet")
    return out / "embeddings.parquet"


def project(z: np.ndarray, method: str) -> np.ndarray:
    """(N, Z) -> (N, 2) by PCA, t-SNE (scikit-learn) or UMAP (umap-learn, when installed)."""
    if z.shape[1] <= 2:
        return np.pad(z, ((0, 0), (0, 2 - z.shape[1])))
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2).fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, init="pca", random_state=0).fit_transform(z)
    umap = require("umap", "umap", "projections=[umap]")
    import torch

    threads = torch.get_num_threads()
    try:
        # Seeded, so one thread: what UMAP does anyway, said here so that it does not warn.
        return umap.UMAP(n_components=2, random_state=0, n_jobs=1).fit_transform(z)
    finally:
        # UMAP sets numba's thread count, and so the OpenMP runtime's that torch shares: a
        # process that trains after it (a notebook) would otherwise run on every core.
        torch.set_num_threads(threads)


def write_h5ad(out: Path, z: np.ndarray, rows: np.ndarray, source: str) -> Path:
    """A copy of the input AnnData, its embedded rows (`rows`, in the file's order) only, with
    the codes in obsm["X_vaelab"]; X, layers, obs and var as they were."""
    anndata = require("anndata", "anndata", "format=h5ad")
    copy = anndata.read_h5ad(source)[rows].copy()
    copy.obsm[OBSM_KEY] = z
    out.mkdir(parents=True, exist_ok=True)
    copy.write_h5ad(out / "embeddings.h5ad")
    return out / "embeddings.h5ad"


def embedding_figure(z: np.ndarray, codes: np.ndarray, method: str = "pca", names=None):
    """A 2-D view of the embeddings: a colour and a legend entry per label (its name where the
    labels are text), grey for examples without one; a colour bar where the labels are too many
    integers to name (more than 20)."""
    from matplotlib.figure import Figure

    xy = project(z, method)
    figure = Figure(figsize=(6.5, 5), layout="constrained")
    axes = figure.subplots()
    classes = sorted(set(codes.tolist()) - {-1})
    if classes and (names or len(classes) <= 20):
        colours = _colours(len(classes))
        unlabelled = codes == -1
        if unlabelled.any():
            axes.scatter(*xy[unlabelled].T, s=4, color="lightgrey", label="no label")
        for colour, code in zip(colours, classes, strict=True):
            name = names[code] if names else str(code)
            axes.scatter(*xy[codes == code].T, s=4, color=colour, label=name)
        axes.legend(title="label", markerscale=3, fontsize=7, loc="center left",
                    bbox_to_anchor=(1.0, 0.5), frameon=False)  # fmt: skip
    elif classes:
        points = axes.scatter(xy[:, 0], xy[:, 1], c=codes, s=4, cmap="viridis")
        figure.colorbar(points, ax=axes, label="label")
    else:
        axes.scatter(xy[:, 0], xy[:, 1], s=4)
    axes.set(xlabel=f"{method} 1", ylabel=f"{method} 2", title=f"embeddings ({len(z)}), {method}")
    return figure


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_embeddings(path: Path, z: np.ndarray, codes: np.ndarray, method="pca", names=None):
    embedding_figure(z, codes, method, names).savefig(path, dpi=120)


def _data_file(fmt: str, datamodule, run_cfg: DictConfig) -> str:
    """The table file the embedded data comes from ('' for other data); format=h5ad needs it
    to be an .h5ad, to copy."""
    data_file = str(getattr(datamodule, "path", "") or "")
    if fmt == "h5ad" and not data_file.endswith(".h5ad"):
        raise ConfigError(
            f"format=h5ad writes a copy of the input AnnData with the codes in "
            f"obsm[{OBSM_KEY!r}], and this run's data is not an .h5ad "
            f"({data_file or run_cfg.data._target_}): use format=npy, csv or parquet"
        )
    return data_file


def _named_labels(columns: dict[str, np.ndarray], names: list[str] | None) -> dict:
    """Text labels stay text: `label` holds the names (the codes' own, '' where none), the codes
    follow it as `label_code`."""
    if not names:
        return columns
    codes = columns["label"]
    text = np.asarray([names[c] if c >= 0 else "" for c in codes.tolist()])
    named = {}
    for key, values in columns.items():
        named.update({"label": text, "label_code": codes} if key == "label" else {key: values})
    return named


def export(cfg: DictConfig) -> Path:
    from vaelab.console import quiet
    from vaelab.embeddings import embed
    from vaelab.runs.targets import trusted_targets
    from vaelab.runs.trained import inference_trainer, load_trained, placed, trained_data

    quiet()
    model, run_cfg, checkpoint = load_trained(cfg.ckpt_path, trusted_targets(cfg))
    datamodule = trained_data(cfg.get("data"), run_cfg, checkpoint, "predict")
    data_file = _data_file(cfg.format, datamodule, run_cfg)
    splits = SPLITS if cfg.split == "all" else (cfg.split,)
    with placed(model, inference_trainer(cfg.trainer)) as on_device:  # placed once
        embedded = {split: embed(on_device, datamodule.loader(split)) for split in splits}
    # Data with known generative factors: written beside the embeddings.
    names = datamodule.factor_names
    parts = []
    for split in splits:
        z, labels = embedded[split]
        part = {
            "index": datamodule.indices[split].numpy(),
            "source": np.full(len(z), datamodule.sources[split]),
            "split": np.full(len(z), split),
            "id": datamodule.row_ids(split),
            "label": labels,
        }
        if names:
            split_factors = datamodule.factors[split].T.numpy()
            part.update({f"factor:{n}": f for n, f in zip(names, split_factors, strict=True)})
        parts.append((z, part))
    z = np.concatenate([p[0] for p in parts])
    columns = {
        name: np.concatenate([p[1][name] for p in parts])
        for name in parts[0][1]
        if parts[0][1][name] is not None
    }
    # Rows in the order of the data's own files: a table's rows come out as the file has them.
    source = [SPLITS.index(name) for name in columns.pop("source")]
    order = np.lexsort((columns["index"], source))
    z, columns = z[order], {name: values[order] for name, values in columns.items()}
    factors = {
        n.removeprefix("factor:"): columns.pop(n) for n in list(columns) if n.startswith("factor:")
    }
    codes, names = columns["label"], datamodule.label_names()
    columns = _named_labels(columns, names)
    out = Path(cfg.paths.output_dir)
    if cfg.format == "h5ad":
        path = write_h5ad(out, z, columns["index"], data_file)
    else:
        path = write_embeddings(out, cfg.format, z, columns, factors)
    plot_embeddings(out / "embeddings.png", z, codes, names=names)
    for method in cfg.projections:
        if method not in ("tsne", "umap"):
            raise ConfigError(f"projections=[{method}]: use tsne or umap (PCA is always drawn)")
        plot_embeddings(out / f"embeddings_{method}.png", z, codes, method, names)
    log.info(f"Wrote {len(z)} embeddings of size {z.shape[1]} to {path}")
    return path


@hydra_main("embed", data_from_run=True)
def main(cfg: DictConfig) -> None:
    with preemptible(Path(cfg.paths.output_dir), resumable=False):
        export(cfg)


if __name__ == "__main__":
    main()
