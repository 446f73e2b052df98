"""Every option of every config group composes and its objects instantiate."""

import importlib
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import CONF, write_mnist_like
from tests.datasets import (
    expression_matrix,
    write_celeba_like,
    write_cifar_like,
    write_dsprites_like,
    write_mpi3d_like,
    write_shapes3d_like,
    write_table,
)
from vaelab import compose
from vaelab.config.instantiate import build, build_group, build_trainer
from vaelab.config.presets import group_options
from vaelab.config.schema import validate
from vaelab.errors import ConfigError

GROUPS = [
    "data",
    "model",
    "model/net",
    "model/optimizer",
    "model/scheduler",
    "model/kl_schedule",
    "model/prior",
    "model/posterior",
    "trainer",
    "logger",
    "callbacks",
    "metrics",
    "experiment",
    "debug",
    "paths",
    "hydra",
    "hydra/launcher",
    "hparams_search",
]
# Parts that the model configs start from (`shared/model@_here_`), not options of their own.
PARTS = ["model/shared"]


# The official factor datasets on small grids, written in their formats (tests/datasets.py).
FACTOR_GRIDS = {
    "shapes3d": {"floor_hue": 2, "wall_hue": 2, "object_hue": 2, "scale": 2, "shape": 4,
                 "orientation": 3},
    "mpi3d": {"object_color": 2, "object_shape": 2, "object_size": 2, "camera_height": 3,
              "background_color": 1, "horizontal_axis": 2, "vertical_axis": 2},
}  # fmt: skip


def _data_for(group: str, option: str, tmp_path, monkeypatch) -> list[str]:
    """Overrides that give a case data it can run on: its own dataset's files in the real
    format; 28x28 images elsewhere, so that every net, the conv included, can take them."""
    name = {"conv_32x32": "cifar10", "conv_64x64": "celeba"}.get(option, "fashion_mnist")
    if group in ("data", "experiment"):
        composed = OmegaConf.load(CONF / group / f"{option}.yaml")
        chosen = [
            d["override /data"] for d in composed.get("defaults", []) if "override /data" in d
        ]
        name = option if group == "data" else (chosen or ["digits"])[0]
    choice = [] if group in ("data", "experiment") else [f"data={name}"]
    if name in ("mnist", "fashion_mnist"):
        return [
            *choice,
            f"data.data_dir={write_mnist_like(tmp_path / 'mnist')}",
            "data.val_size=50",
        ]
    if name == "cifar10":
        return [*choice, f"data.data_dir={write_cifar_like(tmp_path)}", "data.val_size=10"]
    if name == "celeba":
        return [*choice, f"data.data_dir={write_celeba_like(tmp_path)}"]
    if name == "dsprites":
        folder = write_dsprites_like(tmp_path / "dsprites").parent
        return [*choice, f"data.data_dir={folder}", "data.test_size=20"]
    if name in FACTOR_GRIDS:
        module = importlib.import_module(f"vaelab.data.{name}")
        monkeypatch.setattr(module, "SIZES", FACTOR_GRIDS[name])
        writer = write_shapes3d_like if name == "shapes3d" else write_mpi3d_like
        folder = writer(tmp_path / name, tuple(FACTOR_GRIDS[name].values())).parent
        return [*choice, f"data.data_dir={folder}", "data.test_size=20"]
    if name == "tabular":
        counts, kinds, ids = expression_matrix()
        path = write_table(tmp_path / "m.csv", counts, kinds, ids)
        return [*choice, f"data.path={path}", "data.label_column=cell_type", "data.id_column=cell"]
    return choice


CASES = [(group, option) for group in GROUPS for option in group_options(group)]


def test_every_group_folder_is_covered():
    folders = {str(p.parent.relative_to(CONF)) for p in CONF.rglob("*.yaml") if p.parent != CONF}
    assert folders == set(GROUPS) | set(PARTS)


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(compose_train, tmp_path, monkeypatch, group, option):
    data = _data_for(group, option, tmp_path, monkeypatch)
    cfg = compose_train(*data, f"{group}={option}", quick=False)

    datamodule = build(cfg.data)
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    model = build(cfg.model, input_shape=list(datamodule.shape))
    assert isinstance(model, L.LightningModule)
    callbacks = build_group(cfg.get("callbacks"))
    loggers = build_group(cfg.get("logger"))
    if cfg.trainer.get("accelerator") == "mps" and not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="trainer.accelerator=mps, but no Apple GPU"):
            validate(cfg)
        return
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        with pytest.raises(Exception, match="No supported gpu backend"):
            build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers)
        return
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert isinstance(trainer, L.Trainer)
    if cfg.model.get("scheduler"):
        trainer.strategy.connect(model)
        model.trainer = trainer
        assert model.configure_optimizers()["lr_scheduler"]["scheduler"] is not None


@pytest.mark.parametrize("preset", ["fdr", "limit", "overfit"])
def test_debug_runs_go_under_logs_debug_apart_from_real_runs(preset):
    real, debug = compose(), compose(f"debug={preset}")
    assert Path(real.paths.output_dir).parent == Path("logs/train/runs").absolute()
    assert Path(debug.paths.output_dir).parent == Path("logs/debug/runs").absolute()
