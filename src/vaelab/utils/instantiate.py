"""Build lists of callbacks and loggers from config groups whose entries are `_target_` configs."""

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """One object per entry that has a `_target_`; entries set to null are switched off."""
    if not cfg:
        return []
    return [instantiate(entry) for entry in cfg.values() if entry and "_target_" in entry]
