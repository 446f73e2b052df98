"""A trained model back from its checkpoint, with the config of the run that trained it: what
vaelab-eval, vaelab-embed and vaelab-sample start from."""

from pathlib import Path

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from vaelab.errors import ConfigError
from vaelab.utils.resume import check_checkpoint


def training_config(ckpt_path: Path) -> DictConfig:
    """The config.yaml of the run a checkpoint belongs to (found in a folder above it)."""
    for folder in ckpt_path.resolve().parents:
        if (folder / "config.yaml").is_file():
            return OmegaConf.load(folder / "config.yaml")
    raise ConfigError(
        f"ckpt_path={ckpt_path}: no config.yaml of a vaelab-train run in the folders above it"
    )


def load_trained(ckpt_path: str):
    """(model in eval mode, the run's config, the checkpoint's path); the model's class is the
    one the run trained, its arguments the hyper-parameters saved in the checkpoint."""
    path = Path(check_checkpoint(ckpt_path))
    run_cfg = training_config(path)
    model = get_class(run_cfg.model._target_).load_from_checkpoint(path, weights_only=True)
    return model.eval(), run_cfg, path


def trained_data(data_cfg: DictConfig | None, run_cfg: DictConfig, ckpt_path: Path, stage: str):
    """The datamodule set up as the run had it, with the state that the checkpoint saved (a
    table's fitted standardisation), so that new data goes through the same transform.

    `data_cfg` is the command's own `data`: a whole data config when the user chose one
    (`data=mnist`), else the keys the user set (`data.path=new.csv`) on top of the run's.
    """
    from vaelab.utils.instantiate import build

    if data_cfg is None or "_target_" not in data_cfg:
        data_cfg = OmegaConf.merge(run_cfg.data, data_cfg or {})
    datamodule = build(data_cfg)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = checkpoint.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return datamodule
