"""OmegaConf resolvers that vaelab's configs use; registered when vaelab is imported."""

from typing import Any

from omegaconf import OmegaConf


def _if_set(value: Any, then: Any, otherwise: Any) -> Any:
    """${if_set:${resume},A,B}: A when the value is set (not null or empty), else B."""
    return then if value not in (None, "") else otherwise


def register() -> None:
    if not OmegaConf.has_resolver("if_set"):
        OmegaConf.register_new_resolver("if_set", _if_set)
