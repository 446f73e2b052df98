"""Objects from `_target_` configs, with errors a user can fix left unwrapped."""

import re
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vaelab.errors import ConfigError, UserError


def build(cfg: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, except that a UserError raised while building (a net that does
    not fit the data, say) comes out as itself rather than inside Hydra's InstantiationException,
    whose message repeats every level of nesting."""
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, UserError):
            unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
            if isinstance(cause, TypeError) and unexpected:
                raise ConfigError(
                    f"{cfg.get('_target_')} takes no argument {unexpected.group(1)!r}: remove "
                    f"that key from the config (or fix its spelling)"
                ) from None
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


def build_group(cfg: DictConfig | None) -> list[Any]:
    """One object per entry of a group (callbacks, logger) that has a `_target_`; entries set to
    null are switched off."""
    if not cfg:
        return []
    return [build(entry) for entry in cfg.values() if entry and "_target_" in entry]


VAELAB_TRAINER_KEYS = ("steps_per_call", "threads")


def build_trainer(cfg: DictConfig, **kwargs: Any) -> Any:
    """The Lightning Trainer of the `trainer` group; what Lightning refuses as it starts (an
    accelerator this machine lacks, say) is a trainer.* value, said in one line.
    `steps_per_call` and `threads` are vaelab's (the training step's, the run's), not the
    Trainer's."""
    if any(key in cfg for key in VAELAB_TRAINER_KEYS):
        cfg = OmegaConf.to_container(cfg, resolve=True)
        for key in VAELAB_TRAINER_KEYS:
            cfg.pop(key, None)
        cfg = OmegaConf.create(cfg)
    try:
        return build(cfg, **kwargs)
    except InstantiationException as error:
        why = str(error.__cause__ or error).strip().splitlines()[0]
        raise ConfigError(f"the trainer.* settings were refused by Lightning: {why}") from error
