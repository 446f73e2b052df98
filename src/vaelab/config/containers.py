"""Plain Python containers for configs, so checkpoints load with torch.load(weights_only=True)."""

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def to_plain(value: Any) -> Any:
    """DictConfig/ListConfig (resolved) and tuples become dicts and lists, recursively."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
