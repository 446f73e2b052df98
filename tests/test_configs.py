"""Every option of every config group composes and its objects instantiate."""

import lightning as L
import pytest
import torch

from tests.conftest import CONF, group_options
from vaelab.utils.instantiate import build, build_group

GROUPS = [
    "data",
    "model",
    "model/net",
    "model/optimizer",
    "model/scheduler",
    "model/kl_schedule",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "debug",
    "paths",
    "hydra",
    "hydra/launcher",
    "hparams_search",
]
CASES = [(group, option) for group in GROUPS for option in group_options(group)]


def test_every_group_folder_is_covered():
    folders = {str(p.parent.relative_to(CONF)) for p in CONF.rglob("*.yaml") if p.parent != CONF}
    assert folders == set(GROUPS)


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(compose_train, mnist_dir, group, option):
    # 28x28 data, so that every net, the conv included, can take it.
    data = ["data=fashion_mnist", f"data.data_dir={mnist_dir}", "data.val_size=50"]
    cfg = compose_train(*data, f"{group}={option}", quick=False)

    datamodule = build(cfg.data)
    datamodule.setup("fit")
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    model = build(cfg.model, input_shape=list(datamodule.shape))
    assert isinstance(model, L.LightningModule)
    callbacks = build_group(cfg.get("callbacks"))
    loggers = build_group(cfg.get("logger"))
    if cfg.trainer.get("accelerator") == "gpu" and not torch.cuda.is_available():
        with pytest.raises(Exception, match="No supported gpu backend"):
            build(cfg.trainer, callbacks=callbacks, logger=loggers)
        return
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert isinstance(trainer, L.Trainer)
    if cfg.model.get("scheduler"):
        trainer.strategy.connect(model)
        model.trainer = trainer
        assert model.configure_optimizers()["lr_scheduler"]["scheduler"] is not None
