"""A user error as one line on stderr and an exit status; anything else keeps its traceback."""

import difflib
import os
import re
import sys
import traceback
from typing import Any, NoReturn

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from vaelab.config.config_dir import config_dir
from vaelab.errors import OutOfMemory, UserError

# OmegaConf appends these lines to its messages; they repeat what the first line said.
_NOISE = ("full_key:", "object_type=", "reference_type=", "Set the environment variable")

# What Hydra raises for a bad command line: an unknown option or key, a malformed override; and
# OmegaConf's error for a required key (`???`) left unset.
_COMPOSITION_ERRORS = (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
    MissingMandatoryValue,
)


def _user_error(error: BaseException) -> BaseException | None:
    """The error a user can fix, if this is one or was caused by one; None for a bug."""
    if isinstance(error, _COMPOSITION_ERRORS):
        return error
    while error is not None and not isinstance(error, UserError):
        if memory := OutOfMemory.from_error(error):
            return memory
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


def suggest(key: str, config_name: str, overrides: list[str]) -> str | None:
    """The config key nearest to a mistyped one, in the config these overrides compose."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    others = [o for o in overrides if "=" in o and not o.lstrip("+~").startswith(f"{key}=")]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name, overrides=[o for o in others if not o.startswith("hydra")])
    except Exception:  # the other overrides are broken too: no suggestion then
        return None
    finally:
        GlobalHydra.instance().clear()
    keys = []

    def walk(node: Any, prefix: str) -> None:
        for name in node.keys() if isinstance(node, DictConfig) else ():
            path = f"{prefix}{name}"
            keys.append(path)
            walk(node._get_node(name), f"{path}.")

    walk(cfg, "")
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return close[0] if close else None


def exit_if_user_error(error: Exception, config_name: str = "") -> None:
    """Print a user error as `error: <one line>` and exit with its code (1 for bad input);
    return for anything else (a bug),
    and for everything when the user set HYDRA_FULL_ERROR=1 and wants tracebacks."""
    user_error = _user_error(error)
    if user_error is None or os.environ.get("VAELAB_TRACEBACKS") == "1":
        return
    message = one_line(user_error)
    unknown = re.match(r"Could not override '([\w.]+)'", message)
    if unknown and config_name:
        key = unknown.group(1)
        near = suggest(key, config_name, sys.argv[1:])
        hint = f": did you mean {near}?" if near else ""
        add = f"+{key}=..."
        if any(a.startswith("resume=") for a in sys.argv[1:]):
            # The run's own keys (a callback it was started with: +callbacks.x=...) are not in
            # the config this command line is checked against; ++ adds or overrides.
            add += f", or ++{key}=... to change a key the run was started with"
        message = f"{key} is not a config key{hint} (to add a new key use {add})"
    say_and_exit(message, getattr(user_error, "exit_code", 1))


def say_and_exit(message: str, code: int) -> NoReturn:
    from vaelab.runs.secrets import mask_text

    message = mask_text(message)
    sys.stderr.write(f"error: {message}\n" if code else f"{message}\n")
    sys.exit(code)


def exit_for(error: UserError) -> NoReturn:
    """End the process for a user error raised where Hydra would only warn of it (in its
    callbacks): its one line, or its traceback under HYDRA_FULL_ERROR=1."""
    if os.environ.get("VAELAB_TRACEBACKS") == "1":
        traceback.print_exception(error)
        sys.exit(error.exit_code or 1)
    say_and_exit(one_line(error), error.exit_code)
