"""The console scripts' shell: Hydra composes the config, errors a user can fix end in one line."""

import difflib
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from vaelab.config.config_dir import config_dir
from vaelab.errors import OutOfMemory, Preempted, UserError

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


def _exit_if_user_error(error: Exception, config_name: str = "") -> None:
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
    _exit(message, getattr(user_error, "exit_code", 1))


def _exit(message: str, code: int) -> NoReturn:
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
    _exit(one_line(error), error.exit_code)


def hydra_main(
    config_name: str, data_from_run: bool = False
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorate `task(cfg)` into a console script on conf/<config_name>.yaml.

    With `data_from_run`, the command works on a trained run's data config, which its own config
    does not hold: `data.path=new.csv` is passed to Hydra as `++data.path=new.csv` (add or
    override), and the task merges what it gets onto the run's data config.

    A user error ends the process with `error: <one line>` on stderr and exit status 1. In a
    single run it is caught inside the job, before Hydra adds its "Error executing job" line; in
    a multirun it propagates, so that the launcher records the job as failed. Errors of
    composition (an unknown option, a malformed override) come back here because Hydra is told
    to re-raise them (HYDRA_FULL_ERROR). Anything else keeps its full traceback.
    """

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        def job(cfg: DictConfig) -> Any:
            try:
                return task(cfg)
            except Preempted as error:
                exit_for(error)  # also in a multirun: the next job must not start
            except Exception as error:
                if HydraConfig.get().mode != RunMode.MULTIRUN:
                    _exit_if_user_error(error)
                raise

        hydra_job = hydra.main(
            version_base="1.3", config_path=config_dir(), config_name=config_name
        )(job)

        def main() -> Any:
            # Put back when done: a second call in this process (a notebook's, a test's) must
            # not take this one's HYDRA_FULL_ERROR for the user's wish for tracebacks.
            before = {n: os.environ.get(n) for n in ("HYDRA_FULL_ERROR", "VAELAB_TRACEBACKS")}
            if before["HYDRA_FULL_ERROR"] == "1":
                os.environ["VAELAB_TRACEBACKS"] = "1"
            os.environ["HYDRA_FULL_ERROR"] = "1"
            if data_from_run:
                sys.argv = [f"++{a}" if a.startswith("data.") else a for a in sys.argv]
            try:
                return hydra_job()
            except KeyboardInterrupt:
                # Ctrl-C outside Lightning's loops (which end a fit themselves, exit 1).
                _exit("interrupted (Ctrl-C); a training run continues with resume=<run dir>", 130)
            except Exception as error:
                _exit_if_user_error(error, config_name)
                raise
            finally:
                from vaelab.runs.guard import release_all

                release_all()
                for name, value in before.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value

        return main

    return decorate
