"""Data with known generative factors: the sprite renderer, the readers of the official files
(on small grids written in their formats), the factor contract, training and the exports."""

import math
import re

import numpy as np
import pytest
import torch

from tests.conftest import run_here
from tests.datasets import (
    DSPRITES_SIZES,
    write_dsprites_like,
    write_mpi3d_like,
    write_shapes3d_like,
)
from tests.helpers import metrics_rows
from vaelab.data import (
    DSpritesDataModule,
    MPI3DDataModule,
    Shapes3DDataModule,
    SpritesDataModule,
    mpi3d,
    shapes3d,
)
from vaelab.data.sprites import MARGIN, render
from vaelab.errors import DataError

SIZE = 64


def _centre(image: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(image)
    return np.array([cols.mean(), rows.mean()])


def test_rendering_is_deterministic_and_binary():
    args = ([0, 1, 2], [0.5, 0.8, 1.0], [0.1, 2.0, 4.0], [0.2, 0.5, 0.9], [0.7, 0.1, 0.5])
    first, second = render(*args, size=SIZE), render(*args, size=SIZE)
    assert first.dtype == bool and np.array_equal(first, second) and first.any(axis=(1, 2)).all()


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_a_position_step_moves_the_centre_of_mass_by_its_share_of_the_image(shape):
    images = render([shape] * 2, [1.0] * 2, [0.0] * 2, [0.25, 0.75], [0.5, 0.5], size=SIZE)
    moved = _centre(images[1]) - _centre(images[0])
    expected = 0.5 * (1 - 2 * MARGIN) * SIZE  # pixels for half the position range, across
    assert moved[0] == pytest.approx(expected, abs=0.5) and abs(moved[1]) < 0.5
    down = render([shape] * 2, [1.0] * 2, [0.0] * 2, [0.5, 0.5], [0.25, 0.75], size=SIZE)
    assert (_centre(down[1]) - _centre(down[0]))[1] == pytest.approx(expected, abs=0.5)


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_rotation_keeps_the_area_and_scale_changes_it_by_its_square(shape):
    angles = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    turned = render([shape] * 40, [1.0] * 40, angles, [0.5] * 40, [0.5] * 40, size=SIZE)
    areas = turned.sum(axis=(1, 2))
    # The raster's error: at most half the pixels on the shape's edge turn over.
    inside = turned[:, 1:-1, 1:-1]
    edge = inside & ~(turned[:, :-2, 1:-1] & turned[:, 2:, 1:-1] & turned[:, 1:-1, :-2]
                      & turned[:, 1:-1, 2:])  # fmt: skip
    assert (np.abs(areas - areas.mean()) <= edge.sum(axis=(1, 2)) / 2).all()
    # Scale, at a resolution where the raster's error is small against the area.
    small, large = render([shape] * 2, [0.5, 1.0], [0.0] * 2, [0.5] * 2, [0.5] * 2, size=512)
    assert large.sum() / small.sum() == pytest.approx(4.0, rel=0.05)  # a side: ±1 of 70 px


def test_the_heart_is_not_symmetric_under_a_half_turn_and_the_ellipse_is():
    heart, ellipse = render([2, 1], [1.0, 1.0], [0.0, 0.0], [0.5, 0.5], [0.5, 0.5], size=SIZE)
    assert (heart != np.rot90(heart, 2)).sum() > 0.2 * heart.sum()
    assert (ellipse != np.rot90(ellipse, 2)).sum() < 0.02 * ellipse.sum()


def test_sprites_hold_the_factor_contract():
    grid = {"shape": 3, "scale": 2, "orientation": 4, "position_x": 4, "position_y": 4}
    dm = SpritesDataModule(grid=grid, image_size=16, test_size=100, label_factor="scale")
    dm.setup()
    assert dm.factor_names == ("shape", "scale", "orientation", "position_x", "position_y")
    assert dm.factor_sizes == (3, 2, 4, 4, 4)
    assert sum(len(f) for f in dm.factors.values()) == 3 * 2 * 4 * 4 * 4
    for split, (x, y) in dm.splits.items():
        assert x.shape[1:] == (1, 16, 16) and set(x.unique().tolist()) <= {0, 255}
        assert dm.factors[split].dtype == torch.int64
        assert torch.equal(y, dm.factors[split][:, 1])  # label_factor=scale
    again = SpritesDataModule(grid=grid, image_size=16, test_size=100, label_factor="scale")
    again.setup()
    assert torch.equal(again.factors["test"], dm.factors["test"])  # the split is seeded


def test_dsprites_reads_the_official_layout_and_a_sub_grid(tmp_path):
    write_dsprites_like(tmp_path)
    dm = DSpritesDataModule(data_dir=str(tmp_path), grid={"orientation": 2}, test_size=10)
    dm.setup()
    assert dm.factor_sizes == (3, 2, 2, 3, 3)
    x = torch.cat([dm.splits[s][0] for s in ("train", "val", "test")])
    assert x.shape == (3 * 2 * 2 * 3 * 3, 1, 64, 64) and set(x.unique().tolist()) <= {0, 255}
    # Each image is the file's row of its factors (the orientations kept: 0 and 3 of 4).
    factors = torch.cat([dm.factors[s] for s in ("train", "val", "test")]).numpy()
    full = factors.copy()
    full[:, 2] = np.array([0, 3])[factors[:, 2]]
    rows = np.ravel_multi_index((np.zeros(len(full), int), *full.T), DSPRITES_SIZES)
    with np.load(tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz") as npz:
        assert np.array_equal(x[:, 0].numpy(), npz["imgs"][rows] * 255)


def test_a_file_in_the_wrong_layout_is_refused_in_one_line(tmp_path):
    path = write_dsprites_like(tmp_path)
    with np.load(path) as npz:
        classes = npz["latents_classes"][::-1]  # rows out of grid order
        np.savez(path, imgs=npz["imgs"], latents_classes=classes)
    with pytest.raises(DataError, match="cannot read .* as dSprites .* not the factor grid"):
        DSpritesDataModule(data_dir=str(tmp_path)).setup()
    with pytest.raises(DataError, match="dSprites not found: looked for"):
        DSpritesDataModule(data_dir=str(tmp_path / "none")).setup()


def test_shapes3d_reads_only_the_kept_rows(tmp_path, monkeypatch):
    sizes = {"floor_hue": 2, "wall_hue": 2, "object_hue": 2, "scale": 2, "shape": 4,
             "orientation": 3}  # fmt: skip
    monkeypatch.setattr(shapes3d, "SIZES", sizes)
    write_shapes3d_like(tmp_path, tuple(sizes.values()))
    dm = Shapes3DDataModule(data_dir=str(tmp_path), grid={"orientation": 2}, test_size=10)
    dm.setup()
    assert dm.factor_sizes == (2, 2, 2, 2, 4, 2)
    x, y = dm.splits["train"]
    assert x.shape[1:] == (3, 64, 64) and torch.equal(y, dm.factors["train"][:, 4])
    # The first pixels hold the factors as written: the file's row for each kept point.
    kept = dm.factors["train"].numpy().copy()
    kept[:, 5] = np.array([0, 2])[kept[:, 5]]
    assert np.array_equal(x[:, 0, 0, :6].numpy(), kept * 7 % 256)


def test_mpi3d_memory_maps_the_uncompressed_file(tmp_path, monkeypatch):
    sizes = {"object_color": 2, "object_shape": 2, "object_size": 2, "camera_height": 3,
             "background_color": 1, "horizontal_axis": 2, "vertical_axis": 2}  # fmt: skip
    monkeypatch.setattr(mpi3d, "SIZES", sizes)
    path = write_mpi3d_like(tmp_path, tuple(sizes.values()), variant="real")
    images = mpi3d.npz_array(path, "images")
    assert isinstance(images, np.memmap)
    with np.load(path) as npz:
        assert np.array_equal(images, npz["images"])
    dm = MPI3DDataModule(data_dir=str(tmp_path), variant="real", test_size=10,
                         label_factor="object_shape")  # fmt: skip
    dm.setup()
    assert sum(len(f) for f in dm.factors.values()) == 96 and dm.factor_sizes == (
        2,
        2,
        2,
        3,
        1,
        2,
        2,
    )
    with pytest.raises(DataError, match=r"MPI3D \(toy\) not found"):
        MPI3DDataModule(data_dir=str(tmp_path)).setup()


DISENTANGLEMENT = ["mig", "sap", "dci_disentanglement", "dci_completeness",
                   "dci_informativeness", "beta_vae_score", "factor_vae_score"]  # fmt: skip
QUICK_METRICS = ["metrics.num_train=100", "metrics.num_eval=50", "metrics.fit_examples=200",
                 "metrics.score_examples=100", "metrics.num_variance_estimate=500"]  # fmt: skip
SMALL_GRID = ["data=sprites", "data.image_size=16", "data.test_size=200", "data.grid.scale=2",
              "data.grid.orientation=4", "data.grid.position_x=6",
              "data.grid.position_y=6"]  # fmt: skip


def test_a_vae_trains_on_sprites_and_exports_the_factors(tmp_path):
    from PIL import Image

    from vaelab import compose
    from vaelab.embed import export
    from vaelab.evaluate import evaluate
    from vaelab.train import train

    cfg = compose(*SMALL_GRID, *QUICK_METRICS, "trainer=cpu", "trainer.max_epochs=2",
                  "model.latent_dim=6", "callbacks.rich_progress_bar=null",
                  "callbacks.images.every_n_epochs=1", output_dir=tmp_path / "run")  # fmt: skip
    results, objects = train(cfg)
    assert results["test/elbo"] < 0 and results["test/active_units"] >= 1
    for name in DISENTANGLEMENT:
        assert 0.0 <= results[f"test/{name}"] <= 1.0, name
    # Traversals of factor data: every latent dimension, a row each, by the last validation's
    # KL per dimension, falling; each row named by its dimension and KL.
    rows = Image.open(tmp_path / "run" / "images" / "traversals.png").text["Rows"].splitlines()
    kl = objects["model"].last_kl_per_dim
    expected = torch.argsort(kl, descending=True).tolist()
    assert rows == [f"z{j} · {kl[j]:.2f} nats" for j in expected]
    assert Image.open(tmp_path / "run" / "images" / "mi_matrix.png").width > 300

    dm = objects["datamodule"]
    ckpt = f"ckpt_path={results['best_ckpt']}"
    path = export(compose(ckpt, "split=all", config_name="embed", output_dir=tmp_path / "npy"))
    factors = np.load(path.parent / "factors.npy")
    indices = np.load(path.parent / "indices.npy")
    assert factors.shape == (len(indices), 5)
    every = torch.zeros(len(indices), 5, dtype=torch.int64)
    for split in ("train", "val", "test"):
        every[dm.indices[split]] = dm.factors[split]
    assert np.array_equal(factors, every[indices].numpy())  # each row's own factors
    evaluated = evaluate(compose(ckpt, *QUICK_METRICS, "iw_samples=5", config_name="eval",
                                 output_dir=tmp_path / "eval"))  # fmt: skip
    for name in DISENTANGLEMENT:
        assert evaluated[f"test/{name}"] == pytest.approx(results[f"test/{name}"]), name
    quiet = evaluate(compose(ckpt, "metrics=none", "iw_samples=5", config_name="eval",
                             output_dir=tmp_path / "eval_none"))  # fmt: skip
    assert not any(f"test/{name}" in quiet for name in DISENTANGLEMENT)
    table = export(compose(ckpt, "split=test", "format=csv", config_name="embed",
                           output_dir=tmp_path / "csv"))  # fmt: skip
    header = table.read_text().splitlines()[0].split(",")
    assert header[:9] == ["index", "split", "label", *dm.factor_names, "z0"]


def test_traversals_follow_the_given_order_of_dimensions():
    from vaelab import pictures
    from vaelab.models import VAE

    net = {"_target_": "vaelab.models.nets.mlp", "hidden": [8]}
    model = VAE(input_shape=[1, 4, 4], latent_dim=3, net=net, optimizer={}).eval()
    x = torch.rand(1, 1, 4, 4)
    plain = pictures.traversals(model, x, steps=5, max_dims=3).view(3, 5, -1)
    ordered = pictures.traversals(model, x, 5, 3, order=torch.tensor([2, 0, 1])).view(3, 5, -1)
    torch.testing.assert_close(ordered, plain[[2, 0, 1]])
    # The labelled figure: the rows of the largest KL first, named by dimension and KL; the
    # KL of a batch is the mean of its examples' closed-form KL per dimension.
    kl = torch.tensor([0.5, 0.01, 2.0])
    figure, rows = pictures.traversal_figure(model, x, 5, 2, kl)
    assert rows == ["z2 · 2.00 nats", "z0 · 0.50 nats"]
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == rows
    assert pictures.traversal_figure(model, x, 5, 2)[1] == ["z0", "z1"]  # no KL: index order
    batch = torch.rand(6, 1, 4, 4)
    q = model.encode(batch)
    expected = 0.5 * (q.loc**2 + q.logvar.exp() - 1 - q.logvar)
    torch.testing.assert_close(pictures.kl_per_dimension(model, batch), expected.mean(0))


def test_shapes3d_and_mpi3d_files_of_another_layout_are_refused_in_one_line(tmp_path):
    import h5py

    (tmp_path / "s").mkdir()
    with h5py.File(tmp_path / "s" / "3dshapes.h5", "w") as file:
        file.create_dataset("images", data=np.zeros((4, 64, 64, 3), np.float32))
        file.create_dataset("labels", data=np.zeros((4, 6)))
    with pytest.raises(DataError, match=r"3dshapes.h5 as 3D Shapes \(h5 with images \(480000"):
        Shapes3DDataModule(data_dir=str(tmp_path / "s")).setup()
    (tmp_path / "m").mkdir()
    np.savez(tmp_path / "m" / "mpi3d_toy.npz", imgs=np.zeros((4, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"mpi3d_toy.npz as MPI3D \(npz with images"):
        MPI3DDataModule(data_dir=str(tmp_path / "m")).setup()


def test_vaelab_train_on_sprites_through_the_cli(tmp_path, capfd, in_process):
    from tests.conftest import cli
    from vaelab.train import main as train_main

    args = [*SMALL_GRID, "debug=fdr", "trainer.accelerator=cpu",
            "callbacks.rich_progress_bar=null", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    code, err = cli(train_main, args, capfd)
    assert code == 0, err[-3000:]
    assert (tmp_path / "run" / "results.json").is_file()


def test_the_study_command_runs_a_sweep_with_the_scores_and_their_picture(tmp_path, capfd):
    from pathlib import Path

    tiny = [arg for arg in SMALL_GRID if arg != "data=sprites"]  # the script picks sprites
    script = Path(__file__).parents[1] / "scripts" / "disentanglement_study.py"
    result = run_here(
        [str(script), "--models", "vae", "beta_vae", "--seeds", "1", "2", "--epochs", "1",
         "--out", str(tmp_path), *tiny, *QUICK_METRICS, "trainer.accelerator=cpu"],
        tmp_path, capfd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = metrics_rows(tmp_path / "sweep", "sweep.csv")
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("vae", "1"),
        ("vae", "2"),
        ("beta_vae", "1"),
        ("beta_vae", "2"),
    ]
    assert all(0.0 <= float(r[f"test/{name}"]) <= 1.0 for r in rows for name in DISENTANGLEMENT)
    assert (tmp_path / "sweep" / "disentanglement.png").stat().st_size > 1000
    assert (tmp_path / "mi_matrix.png").is_file()
    assert "| `beta_vae` |" in result.stdout


def _broken_factor_files(tmp_path):
    """(datamodule, what the one line names) for files of the right name and the wrong content:
    what a failed download, a full disk or a mix-up leaves."""
    cases = []
    # A truncated npz, and one that is no zip at all.
    for name, cut in (("truncated", 0.5), ("text", None)):
        folder = tmp_path / name
        path = write_dsprites_like(folder)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)] if cut else b"imgs,latents\n1,2\n")
        cases.append((DSpritesDataModule(data_dir=str(folder)), f"cannot read {path} as dSprites"))
    # Fewer images than factor rows; images of another size; of another dtype; not 0/1.
    for name, edit in (
        ("fewer", lambda imgs: imgs[:-5]),
        ("size", lambda imgs: imgs[:, :32, :32]),
        ("dtype", lambda imgs: imgs.astype(np.float32)),
        ("grey", lambda imgs: imgs * np.uint8(200)),
    ):
        folder = tmp_path / name
        path = write_dsprites_like(folder)
        with np.load(path) as npz:
            np.savez(path, imgs=edit(npz["imgs"]), latents_classes=npz["latents_classes"])
        cases.append((DSpritesDataModule(data_dir=str(folder)), f"cannot read {path} as dSprites"))
    # An npz under the h5 file's name, and a truncated h5.
    folder = tmp_path / "h5"
    write_dsprites_like(folder).rename(folder / "3dshapes.h5")
    cases.append((Shapes3DDataModule(data_dir=str(folder)), "as 3D Shapes"))
    folder = tmp_path / "short_h5"
    sizes = (2, 2, 2, 2, 4, 3)
    path = write_shapes3d_like(folder, sizes)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    cases.append((Shapes3DDataModule(data_dir=str(folder)), "as 3D Shapes"))
    # A truncated MPI3D npz.
    folder = tmp_path / "mpi3d"
    path = write_mpi3d_like(folder, (2, 2, 2, 2, 2, 2, 2))
    path.write_bytes(path.read_bytes()[:5000])
    cases.append((MPI3DDataModule(data_dir=str(folder)), "as MPI3D"))
    return cases


def test_broken_files_of_factor_datasets_are_one_line_that_names_them(tmp_path):
    for datamodule, fragment in _broken_factor_files(tmp_path):
        with pytest.raises(DataError, match=re.escape(fragment)):
            datamodule.setup()


def test_the_sweeps_disentanglement_picture_is_a_labelled_grid_with_a_legend():
    """A panel per score (4 a row), its axes named (the swept key, the score), a legend entry
    per seed; no picture without scores."""
    from vaelab.sweep import SCORES, disentanglement_figure

    rows = [
        {"overrides": f"model={m} seed={s}", "model": m, "seed": s, "status": "COMPLETED",
         **{f"test/{score}": str(0.1 * i + 0.01 * int(s)) for i, score in enumerate(SCORES)}}
        for m in ("vae", "beta_tcvae") for s in ("1", "2", "10")
    ]  # fmt: skip
    figure = disentanglement_figure(rows)
    shown = [a for a in figure.axes if a.get_visible()]
    assert [a.get_title() for a in shown] == list(SCORES)  # 7 scores: 4 + 3 panels
    assert len(figure.axes) == 8 and shown[4].get_subplotspec().rowspan.start == 1
    assert {(a.get_xlabel(), a.get_ylabel()) for a in shown[:1]} == {("model", "test/mig")}
    assert [t.get_text() for t in shown[0].get_xticklabels()] == ["vae", "beta_tcvae"]
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["seed 1", "seed 2", "seed 10"]
    # Each point where its job put it: seed 2 of beta_tcvae, the third score (0.2 + 0.02).
    points = [line for line in shown[2].get_lines() if line.get_label() == "seed 2"]
    assert sorted((float(p.get_xdata()[0]), float(p.get_ydata()[0])) for p in points) == [
        (0.0, pytest.approx(0.22)), (1.0, pytest.approx(0.22))]  # fmt: skip
    unscored = [{**r, **{f"test/{s}": "" for s in SCORES}} for r in rows]
    assert disentanglement_figure(unscored) is None
