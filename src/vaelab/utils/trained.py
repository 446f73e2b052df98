"""A trained model back from its checkpoint, with the config of the run that trained it: what
vaelab-eval, vaelab-embed and vaelab-sample start from."""

from pathlib import Path

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
