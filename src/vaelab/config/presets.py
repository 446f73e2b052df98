"""The model presets, read from conf/model/: what the model table, the tests and a sweep over
every model use, so that no list of models is kept by hand and a new preset is in all of them."""

from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

from vaelab.config.config_dir import config_dir


def group_options(group: str) -> list[str]:
    """The options of a config group by name, e.g. group_options("model/prior")."""
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


@cache
def _files() -> dict:
    folder = Path(config_dir()) / "model"
    return {name: OmegaConf.load(folder / f"{name}.yaml") for name in group_options("model")}


def model_presets() -> dict[str, str]:
    """{preset: the class it builds} for every conf/model/*.yaml, by name; a variant (beta_vae)
    has the class of the preset its defaults list extends."""
    files = _files()

    def target(name: str) -> str:
        config = files[name]
        if "_target_" in config:
            return config._target_
        extended = [e for e in config.get("defaults", []) if isinstance(e, str) and e in files]
        return target(extended[0])

    return {name: target(name) for name in files}


def one_preset_per_class() -> list[str]:
    """The preset that names each model class itself (vae, not its variant beta_vae): one run
    of each covers every class."""
    return sorted(name for name, config in _files().items() if "_target_" in config)
