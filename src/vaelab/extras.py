"""Optional packages, each behind an extra of its own (pyproject's optional-dependencies): a
feature whose package is missing says in one line which extra brings it."""

import importlib
from types import ModuleType

from vaelab.errors import ConfigError


def require(module: str, extra: str, feature: str) -> ModuleType:
    """`import module` for `feature`, or ConfigError naming `pip install 'vaelab[extra]'`."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        # Only the package itself being absent; a broken install shows its own error.
        if error.name is None or error.name.split(".")[0] != module.split(".")[0]:
            raise
        raise ConfigError(
            f"{feature} needs the {module.split('.')[0]} package: pip install 'vaelab[{extra}]'"
        ) from None
