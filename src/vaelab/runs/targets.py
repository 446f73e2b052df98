"""Which classes a run's files may name.

A config.yaml or a checkpoint's hyper-parameters read back from a run folder are files the user
did not type: whoever could write there could name `subprocess.Popen` as the model. So a
`_target_` read from them is built only when it is one of the kinds of object vaelab builds (a
class of vaelab's own, a net factory of `vaelab.models.nets`, a torch optimizer, LR scheduler or
nn module, a Lightning trainer, callback, logger or plugin), or when the user named it for this
command: on its command line, or in a config folder of their own on `hydra.searchpath`.
"""

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vaelab.errors import ConfigError

# Only targets under these packages are imported to be looked at: importing an arbitrary module
# can run code of its own.
_ROOTS = ("vaelab.", "torch.", "lightning.")


def targets_in(config: Any, prefix: str = "") -> dict[str, str]:
    """Every `_target_` string in a config, at any depth, by the key that holds it."""
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=False)
    found: dict[str, str] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "_target_" and isinstance(value, str):
                found[f"{prefix}{key}"] = value
            else:
                found |= targets_in(value, f"{prefix}{key}.")
    elif isinstance(config, list):
        for i, value in enumerate(config):
            found |= targets_in(value, f"{prefix}{i}.")
    return found


def _searchpath_targets(searchpath: Iterable[str]) -> set[str]:
    """The `_target_`s in the YAML files of the user's own config folders (file:// entries)."""
    found: set[str] = set()
    for entry in searchpath:
        if not str(entry).startswith("file://"):
            continue
        for path in Path(str(entry).removeprefix("file://")).rglob("*.yaml"):
            try:
                found |= set(targets_in(OmegaConf.load(path)).values())
            except Exception:  # not a config: it names nothing
                continue
    return found


def trusted_targets(cfg: DictConfig | None = None) -> frozenset[str]:
    """What the user named for this command: the `_target_`s of the config it composed (the
    command line's overrides included) and of the config folders on its hydra.searchpath."""
    from hydra.core.hydra_config import HydraConfig

    found = set(targets_in(cfg).values()) if cfg is not None else set()
    if HydraConfig.initialized():
        found |= _searchpath_targets(HydraConfig.get().searchpath or ())
    return frozenset(found)


def _builds(target: str) -> bool:
    """Whether `target` names a kind of object that vaelab builds from a config."""
    if not target.startswith(_ROOTS) or any(p.startswith("_") for p in target.split(".")):
        return False
    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception:  # not there: whoever builds it says so
        return True
    # The object itself, not the name: `vaelab.runs.run_dir.subprocess.Popen` is subprocess's.
    module = getattr(obj, "__module__", "") or ""
    if inspect.isfunction(obj):
        return module == "vaelab.models.nets"
    if not inspect.isclass(obj):
        return False
    if module.startswith("vaelab."):
        return True
    import torch

    if module.startswith("torch.") and issubclass(
        obj, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.nn.Module)
    ):
        return True
    if not module.startswith("lightning."):
        return False
    import lightning.pytorch as pl
    from lightning.fabric.plugins import CheckpointIO, ClusterEnvironment

    kinds = (
        pl.Trainer,
        pl.Callback,
        pl.loggers.Logger,
        pl.strategies.Strategy,
        pl.accelerators.Accelerator,
        pl.plugins.precision.Precision,
        CheckpointIO,
        ClusterEnvironment,
        pl.LightningDataModule,
    )
    return issubclass(obj, kinds)


def check_targets(config: Any, source: str, trusted: Iterable[str] = (), prefix: str = "") -> None:
    """Refuse, in one line, a `config` read from `source` that names a class vaelab would not
    build from a file and that the user did not name; `prefix`: where `config` sits in a run's
    config (`model.`), for the key the message names."""
    trusted = set(trusted)
    for key, target in sorted(targets_in(config, prefix).items()):
        if target not in trusted and not _builds(target):
            raise ConfigError(
                f"{source} names {key}={target}, which is not a vaelab model, datamodule, net, "
                f"optimizer, scheduler, callback or logger, so it is not run from a file; if it "
                f"is your own, name it for this command: ++{key}={target}, or the config "
                f"folder that holds it ('hydra.searchpath=[file://my_conf]')"
            )
