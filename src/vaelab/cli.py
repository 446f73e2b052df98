"""The console scripts' shell: Hydra composes the config, errors a user can fix end in one line."""

import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from vaelab.errors import UserError
from vaelab.utils.config_dir import config_dir

# OmegaConf appends these lines to its messages; they repeat what the first line said.
_NOISE = ("full_key:", "object_type=", "reference_type=", "Set the environment variable")

# What Hydra raises for a bad command line: an unknown option or key, a malformed override.
_COMPOSITION_ERRORS = (ConfigCompositionException, MissingConfigException, OverrideParseException)


def _user_error(error: BaseException) -> BaseException | None:
    """The error a user can fix, if this is one or was caused by one; None for a bug."""
    if isinstance(error, _COMPOSITION_ERRORS):
        return error
    while error is not None and not isinstance(error, UserError):
        error = error.__cause__ or error.__context__
    return error


def one_line(error: BaseException) -> str:
    """A user error's message on one line: Hydra's option lists joined with commas, OmegaConf's
    key details and Hydra's search-path dump left out."""
    text = str(error)
    if isinstance(error.__cause__, OmegaConfBaseException):
        text += "\n" + str(error.__cause__)
    parts: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Config search path"):
            break
        if not line or line.startswith(_NOISE):
            continue
        if parts and parts[-1].endswith(":") and "options" in parts[-1]:
            parts[-1] += " " + line
        elif parts and parts[-1].startswith("Available options") and " " not in line:
            parts[-1] += ", " + line
        else:
            parts.append(line)
    return " ".join(parts)


def hydra_main(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorate `task(cfg)` into a console script on conf/<config_name>.yaml.

    Hydra is told to re-raise (HYDRA_FULL_ERROR) so that errors come back here: a user error is
    printed as `error: <one line>` with exit status 1, anything else keeps its full traceback.
    Users who set HYDRA_FULL_ERROR=1 themselves get tracebacks for everything.
    """

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        hydra_task = hydra.main(
            version_base="1.3", config_path=config_dir(), config_name=config_name
        )(task)

        def main() -> Any:
            user_wants_traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
            os.environ["HYDRA_FULL_ERROR"] = "1"
            try:
                return hydra_task()
            except Exception as error:
                user_error = _user_error(error)
                if user_wants_traces or user_error is None:
                    raise
                sys.stderr.write(f"error: {one_line(user_error)}\n")
                sys.exit(1)

        return main

    return decorate
