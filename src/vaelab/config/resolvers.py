"""OmegaConf resolvers that vaelab's configs use; registered when vaelab is imported."""

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def _if_set(value: Any, then: Any, otherwise: Any) -> Any:
    """${if_set:${resume},A,B}: A when the value is set (not null or empty), else B."""
    return then if value not in (None, "") else otherwise


def _ne(a: Any, b: Any) -> bool:
    """${ne:A,B}: whether A differs from B."""
    return a != b


def _sweep_name() -> str | None:
    """${sweep_name:}: names the sweep a multirun job belongs to (its W&B group); None otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra = HydraConfig.get()
    return f"{hydra.job.name}-{Path(hydra.sweep.dir).name}"


def register() -> None:
    for name, resolver in (("if_set", _if_set), ("ne", _ne), ("sweep_name", _sweep_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
